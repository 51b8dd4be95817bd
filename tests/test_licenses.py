"""Licences as sources write them -> short ids, and the family filter of --licenses."""

import pytest

from entitynet.errors import ConfigError
from entitynet.licenses import FAMILIES, LicenseFilter, family, normalize

CASES = [
    # Wikimedia Commons extmetadata LicenseShortName
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("CC BY 2.0", "CC-BY-2.0"),
    ("CC BY-SA 2.5", "CC-BY-SA-2.5"),
    ("CC BY-SA 3.0 de", "CC-BY-SA-3.0"),
    ("CC0", "CC0-1.0"),
    ("Public domain", "public-domain"),
    # GBIF: URLs and enums
    ("http://creativecommons.org/licenses/by-nc/4.0/legalcode", "CC-BY-NC-4.0"),
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("http://creativecommons.org/publicdomain/mark/1.0/", "public-domain"),
    ("CC_BY_4_0", "CC-BY-4.0"),
    ("CC_BY_NC_4_0", "CC-BY-NC-4.0"),
    # iNaturalist codes (no version: 4.0)
    ("cc-by-nc", "CC-BY-NC-4.0"),
    ("cc0", "CC0-1.0"),
    ("cc-by-nc-nd", "CC-BY-NC-ND-4.0"),
    ("CC-BY-NC-SA", "CC-BY-NC-SA-4.0"),
    # nothing we know: all rights reserved, other licences, nonsense
    (None, "unknown"),
    ("", "unknown"),
    ("All rights reserved", "unknown"),
    ("GFDL", "unknown"),
    ("cc-by-sa-nd", "unknown"),
    ("cc-nc", "unknown"),
    ("cc-by-by", "unknown"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_sources_spellings_become_one_id(text, expected):
    assert normalize(text) == expected
    assert normalize(normalize(text)) == expected  # an id reads back as itself
    assert family(expected) in FAMILIES


def test_families_and_the_filter():
    assert family("CC-BY-NC-SA-4.0") == "cc-by-nc-sa" and family("CC0-1.0") == "cc0"
    assert family("CC-BY-SA-2.5") == "cc-by-sa" and family("unknown") == "unknown"
    open_only = LicenseFilter.parse("cc0,cc-by,cc-by-sa")
    assert open_only.allows("CC-BY-SA-3.0") and open_only.allows("CC0-1.0")
    assert not open_only.allows("CC-BY-NC-4.0") and not open_only.allows("unknown")
    no_nc = LicenseFilter.parse(exclude="*-nc")
    assert no_nc.exclude == {"cc-by-nc", "cc-by-nc-sa", "cc-by-nc-nd"}
    assert no_nc.allows("CC-BY-4.0") and no_nc.allows("unknown") and not no_nc.allows("CC-BY-NC-SA-2.0")
    assert LicenseFilter.parse(exclude="*-nd").exclude == {"cc-by-nd", "cc-by-nc-nd"}
    assert LicenseFilter().allows("unknown")  # no flags: everything


@pytest.mark.parametrize(
    "include,exclude,message",
    [
        ("cc-by-sa,cc-bysa", "", "did you mean cc-by-sa"),
        ("gpl", "", "unknown licence family 'gpl'"),
        ("", "*-xx", "matches no licence family"),
    ],
)
def test_an_unknown_family_is_one_clear_error(include, exclude, message):
    with pytest.raises(ConfigError, match=message):
        LicenseFilter.parse(include, exclude)
