"""VPA's user_studies/user_profiles.tsv layout and the privacy-score variants, against hand-computed values.

The layout, as VPA's repository (tribhuvanesh/vpa, user_studies/user_profiles.tsv) ships it: no
header, one row per attribute (67 rows, none for a0_safe), tab-separated fields = attribute id,
a free-text description, then 30 float ratings in 1..5 printed like ``1.33333333333``.
"""

from __future__ import annotations

import numpy as np
import pytest

from privobfnet.config import ConfigError, parse_config
from privobfnet.data.errors import DataError
from privobfnet.data.privacy import privacy_protocol, privacy_score, rescale_rating, score_range
from privobfnet.data.readers.vispr import read_user_profiles, read_vispr_split
from tests.conftest import ci_params
from tests.fixtures.real import make_vispr, write_vpa_profiles

IDS = ["a0_safe", "a9_face_complete", "a17_color", "a64_rel_personal"]


@pytest.fixture
def root(tmp_path):
    return make_vispr(tmp_path / "vispr")


def profiles_file(root):
    return root / "user_studies" / "user_profiles.tsv"


def scores(root, split="train", **kwargs):
    return read_vispr_split(str(root), split, dataset="vispr", max_pixels=10**8, **kwargs)[
        "privacy_score"
    ].tolist()


# --- the file layout ------------------------------------------------------------------------------
def test_rows_join_by_id_and_a0_safe_gets_the_lowest_rating(root):
    prefs = read_user_profiles(profiles_file(root), IDS)
    # columns follow attributes.tsv although the file's rows come a64, a17, a9
    expected = np.array([[1.0, 5.0, 2.0, 4.4], [1.0, 3.0, 1.0, 5.0], [1.0, 4.0, 1.0, 1.6]])
    np.testing.assert_array_equal(prefs, expected)


def test_vpa_style_rows_with_long_floats_and_a_thirty_profile_width(tmp_path):
    # shaped like VPA's rows: free-text descriptions with spaces and slashes, 11-digit floats
    ratings = {
        "a9_face_complete": [1.33333333333] * 29 + [4.77777777778],
        "a17_color": [2.90909090909] * 30,
        "a64_rel_personal": [5.0] * 30,
    }
    path = write_vpa_profiles(
        tmp_path,
        {
            "a9_face_complete": ("Face (Complete)", ratings["a9_face_complete"]),
            "a17_color": ("Color / skin tone", ratings["a17_color"]),
            "a64_rel_personal": ("Personal Relationships", ratings["a64_rel_personal"]),
        },
    )
    prefs = read_user_profiles(path, IDS)
    assert prefs.shape == (30, 4)
    assert prefs[29, 1] == pytest.approx(4.77777777778) and prefs[0, 2] == pytest.approx(
        2.90909090909
    )
    assert (prefs[:, 0] == 1.0).all()


def test_a0_safe_row_is_used_when_present(root):
    write_vpa_profiles(
        root,
        {
            "a0_safe": ("Safe", [2.0, 1.0, 1.0]),
            "a9_face_complete": ("f", [1.0] * 3),
            "a17_color": ("c", [1.0] * 3),
            "a64_rel_personal": ("r", [1.0] * 3),
        },
    )
    assert read_user_profiles(profiles_file(root), IDS)[:, 0].tolist() == [2.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "bad_row, rule, detail",
    [
        (
            "a999_bogus\tNot an attribute\t1.0\t1.0\t1.0",
            "unknown attribute id",
            "row 4: 'a999_bogus'",
        ),
        (
            "a9_face_complete\tagain\t1.0\t1.0\t1.0",
            "duplicate attribute row",
            "row 4: 'a9_face_complete'",
        ),
        (
            "a0_safe\tSafe\t1.0\t5.5\t1.0",
            "preference out of range 1..5",
            "row 4 (a0_safe), profile 1: '5.5'",
        ),
        (
            "a0_safe\tSafe\t0.99\t1.0\t1.0",
            "preference out of range 1..5",
            "row 4 (a0_safe), profile 0: '0.99'",
        ),
        ("a0_safe\tSafe\t1.0\t1.0\tthree", "preference out of range 1..5", "profile 2: 'three'"),
        (
            "a0_safe\tSafe\t1.0\t1.0",
            "user-profile rows differ in their number of ratings",
            "row 4 (a0_safe)",
        ),
    ],
)
def test_bad_row_names_file_row_and_value(root, bad_row, rule, detail):
    path = profiles_file(root)
    path.write_text(path.read_text() + bad_row + "\n")
    with pytest.raises(DataError) as err:
        read_vispr_split(str(root), "train", dataset="vispr", max_pixels=10**8)
    assert err.value.path == str(path)
    assert err.value.rule.startswith(rule) and detail in err.value.detail


def test_an_attribute_without_a_row_is_refused(root):
    path = profiles_file(root)
    path.write_text(
        "".join(line + "\n" for line in path.read_text().splitlines() if "a17_color" not in line)
    )
    with pytest.raises(DataError, match="lacks rows for attributes") as err:
        read_user_profiles(path, IDS)
    assert err.value.detail == "a17_color"


def test_the_old_root_level_file_gets_a_pointer_to_user_studies(root):
    profiles_file(root).rename(root / "user_profiles.tsv")
    with pytest.raises(DataError, match="file missing") as err:
        read_user_profiles(profiles_file(root), IDS)
    assert err.value.path == str(profiles_file(root)) and "under user_studies/" in err.value.detail


# --- which score -------------------------------------------------------------------------------------
# make_vispr's images: train 2017_10000001 (a9, a17), train 2017_10000002 (a0_safe), val (a64, a17).
# Per-profile max: image 1 -> 5, 3, 4; image 2 -> 1, 1, 1; val -> 4.4, 5, 1.6.
@pytest.mark.parametrize(
    "profile, rescale, train, val",
    [
        ("mean", "unit", [(4 - 1) / 4, 0.0], [(11 / 3 - 1) / 4]),
        ("mean", "vpa", [(4 - 2.5) / 2.5, -0.6], [(11 / 3 - 2.5) / 2.5]),
        (1, "unit", [(3 - 1) / 4, 0.0], [(5 - 1) / 4]),
        (2, "unit", [(4 - 1) / 4, 0.0], [(1.6 - 1) / 4]),
        (2, "vpa", [(4 - 2.5) / 2.5, -0.6], [(1.6 - 2.5) / 2.5]),
        (0, "vpa", [(5 - 2.5) / 2.5, -0.6], [(4.4 - 2.5) / 2.5]),
    ],
)
def test_profile_and_rescale_variants(root, profile, rescale, train, val):
    assert scores(root, "train", profile=profile, rescale=rescale) == pytest.approx(train)
    assert scores(root, "val", profile=profile, rescale=rescale) == pytest.approx(val)


@pytest.mark.parametrize("profile", [3, -1])
def test_profile_index_outside_the_file_is_refused_naming_the_file(root, profile):
    with pytest.raises(DataError, match="privacy profile index out of range") as err:
        scores(root, profile=profile)
    assert err.value.path == str(profiles_file(root)) and "0..2" in err.value.detail


@pytest.mark.parametrize("pooling", ["max", "mean"])
@pytest.mark.parametrize("rescale", ["unit", "vpa"])
def test_rescaling_before_or_after_pooling_gives_the_same_score(pooling, rescale):
    prefs = np.array([[1.0, 4.5, 2.0, 3.0], [1.0, 2.0, 5.0, 1.2], [1.0, 3.3, 3.3, 4.9]])
    labels = [1, 3]
    after = privacy_score(labels, prefs, pooling=pooling, rescale=rescale)
    rescaled = rescale_rating(prefs, rescale)[:, labels]
    before = (rescaled.max(axis=1) if pooling == "max" else rescaled.mean(axis=1)).mean()
    assert after == pytest.approx(before)


def test_score_ranges_and_the_ends_of_the_rating_scale():
    assert score_range("unit") == (0.0, 1.0) and score_range("vpa") == (-0.6, 1.0)
    prefs = np.array([[1.0, 5.0]])
    assert privacy_score([0], prefs, rescale="vpa") == pytest.approx(-0.6)
    assert privacy_score([1], prefs, rescale="vpa") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown privacy rescale"):
        score_range("percent")
    with pytest.raises(ValueError, match="out of range"):
        privacy_score([0], prefs, profile=1)


def test_protocol_sentence_states_the_choice():
    text = privacy_protocol("vispr", profile="mean", rescale="unit")
    assert "max over the image's attributes" in text and "mean over all profiles" in text
    assert "(x - 1) / 4 to [0, 1]" in text and "a0_safe = 1" in text
    text = privacy_protocol("synthpriv", profile=7, rescale="vpa")
    assert "profile 7 only" in text and "(x - 2.5) / 2.5 to [-0.6, 1]" in text
    none = privacy_protocol("voc", profile="mean", rescale="unit")
    assert none == "Privacy score: none (voc has no user preferences)."


def test_config_takes_mean_or_an_index_and_names_the_key(tmp_path):
    for value in ("mean", 0, 29):
        params = ci_params(tmp_path, data={"privacy_profile": value, "privacy_rescale": "unit"})
        cfg = parse_config(params)
        assert cfg.data.privacy_profile == value and cfg.data.privacy_rescale == "unit"
    # the sigmoid privacy head cannot fit vpa's [-0.6, 1]: refused while it is trained
    with pytest.raises(ConfigError, match=r"data.privacy_rescale: 'vpa'.*sigmoid"):
        parse_config(ci_params(tmp_path, data={"privacy_rescale": "vpa"}))
    params = ci_params(tmp_path, data={"privacy_rescale": "vpa"}, train={"use_privacy": False})
    assert parse_config(params).data.privacy_rescale == "vpa"
    for key, value in (
        ("privacy_profile", "median"),
        ("privacy_profile", True),
        ("privacy_rescale", "minmax"),
    ):
        with pytest.raises(ConfigError, match=f"data.{key}"):
            parse_config(ci_params(tmp_path, data={key: value}))
