"""Legacy links' pure parts (containers/links.py): an endpoint's Links parsed as dockerd's
opts.ParseLink, and which network modes are user-defined."""

import pytest

from dockyard import errors
from dockyard.containers import links


def test_endpoint_links_as_dockerd_parses_them():
    assert links.endpoint_links(None) == {}
    assert links.endpoint_links(["db:alias", "cache", "/web:/c1/w"]) == {
        "alias": "db", "cache": "cache", "w": "web"}
    with pytest.raises(errors.InvalidParameter, match="bad format for links: a:b:c"):
        links.endpoint_links(["a:b:c"])
    with pytest.raises(errors.InvalidParameter, match="empty string specified for links"):
        links.endpoint_links([""])


@pytest.mark.parametrize("mode,user", [(None, False), ("default", False), ("bridge", False),
                                       ("host", False), ("none", False),
                                       ("container:abc", False), ("mynet", True)])
def test_user_defined(mode, user):
    assert links.user_defined(mode) is user
