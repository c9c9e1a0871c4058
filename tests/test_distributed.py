"""Multi-process helpers: which rank's failure is reported when several ranks fail."""

from himoe_fast.train.distributed import _first_failure, _record_failure


def test_the_first_failure_is_reported_not_the_peers_it_caused(tmp_path):
    assert _first_failure(str(tmp_path)) is None
    _record_failure(str(tmp_path), 1, RuntimeError("simulated crash of rank 1\nmore lines"))
    _record_failure(str(tmp_path), 0, RuntimeError("Connection closed by peer"))      # later: a consequence
    assert _first_failure(str(tmp_path)) == (1, "RuntimeError: simulated crash of rank 1")
    (tmp_path / "rank0.failed").write_text("0.0\nRuntimeError: earlier")                # an earlier stamp wins
    assert _first_failure(str(tmp_path)) == (0, "RuntimeError: earlier")
    (tmp_path / "rank5.failed").write_text("garbage")                                   # unreadable: ignored
    assert _first_failure(str(tmp_path))[0] == 0
