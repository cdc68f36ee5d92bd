"""Data sets: the embedded SynthPriv generator and readers for VISPR, VOC 2012 and COCO 2014.

Every reader returns manifests of one schema (``privobfnet.data.manifest``), so the rest of the
pipeline never asks which data set it is.
"""
