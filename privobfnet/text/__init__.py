"""Reading and typing text lines: what each detected line says, and which private attribute it is.

- ``lines``: a read line (polygon, text, confidence, word boxes) and the masks stage's stored form,
  ``lines.parquet`` with a fixed schema;
- ``read``: PP-OCRv6 recognition (the rapidocr wheel's model) of the lines a text backend detected;
- ``recognizers``: known formats and context words (presidio-analyzer's phone, card and date
  recognizers, phonenumbers, usaddress, probablepeople, e-mail and street patterns) -> entities;
- ``learned``: a line classifier trained from image labels only (multiple-instance learning: a
  noisy-OR over an image's lines is supervised by the image's label set);
- ``typer``: the two sources combined (``none | recognizers | learned | both``) into per-line
  attribute scores, with the source that gave each; entities map to the data set's attributes by
  its mask-type table (``privobfnet.data.mask_types.load_text_entities``).
"""
