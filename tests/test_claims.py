import warnings

import pytest

from textnorm.claims import Claims, ClaimWarning


def test_strict_claims_fail_with_the_claim_named():
    claims = Claims(strict=True)
    assert claims.check(True, "holds")
    with pytest.raises(AssertionError, match="the gold control rises"):
        claims.check(False, "the gold control rises")


def test_other_parameters_warn_and_go_on():
    claims = Claims(strict=False)
    with pytest.warns(ClaimWarning, match="the gold control rises"):
        assert not claims.check(False, "the gold control rises")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert claims.check(1 > 0, "holds")
    assert claims.failed == ["the gold control rises"]
