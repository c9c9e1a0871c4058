"""The one progress reporter: plain lines off a terminal, a live bar on one, silence when disabled."""

import io

from rich.console import Console

from himoe_fast.progress import Reporter, report


def test_plain_lines_one_per_update_and_a_closing_line(capsys):
    with Reporter("sweep", total=3, every_s=0) as rep:
        for i in range(3):
            rep.advance(label=f"run {i}")
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["[1/3] sweep: run 0", "[2/3] sweep: run 1", "[3/3] sweep: run 2"]
    assert out[3].startswith("sweep: done in ") and out[3].endswith(" s")
    assert len(out) == 4


def test_plain_lines_are_rate_limited(capsys):
    with Reporter("windows", total=100, every_s=3600) as rep:
        for i in range(100):
            rep(i + 1, 100, "")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[1/100] windows"          # the first update shows, the next 99 fall in the hour
    assert len(out) == 2 and out[1].startswith("windows: done in")


def test_disabled_reporter_prints_nothing(capsys):
    with Reporter("quiet", total=5, enabled=False, every_s=0) as rep:
        for i in range(5):
            rep.advance()
        rep.print("not shown")
    assert capsys.readouterr().out == ""
    assert rep.done == 5


def test_reporter_is_a_progress_callback_and_report_tolerates_none(capsys):
    seen = []
    report(None, 1, 2, "ignored")                     # no callback: nothing happens
    report(lambda d, t, l: seen.append((d, t, l)), 1, 2, "x")
    assert seen == [(1, 2, "x")]
    with Reporter("cb", every_s=0) as rep:
        report(rep, 2, 4, "half")
    assert (rep.done, rep.total, rep.label) == (2, 4, "half")
    assert capsys.readouterr().out.splitlines()[0] == "[2/4] cb: half"


def test_live_bar_on_a_terminal_draws_the_description_and_count(capsys):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with Reporter("training fold 0", total=4, console=console) as rep:
        assert rep.live and not rep.plain
        rep.update(4, label="loss 0.5")
    drawn = buf.getvalue()
    assert "training fold 0" in drawn and "4/4" in drawn and "loss 0.5" in drawn
    assert capsys.readouterr().out == ""               # no plain lines when a bar is live
