"""The one progress bar: what it shows on stderr, and nothing at all when disabled."""

from mpdit_bench.progress import ProgressBar


def test_the_bar_shows_label_count_unit_and_fields_on_stderr(capsys):
    with ProgressBar("train", 10, unit="steps", done=2, fields={"loss": "loss {}", "ips": "{} img/s"}) as bar:
        bar.advance(3)
        bar.update(7, loss="0.1234", ips="5.0")
        bar.log("step 7 loss 0.1234")  # captured stderr is not a terminal: the plain line is written too
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays free for --json
    assert "step 7 loss 0.1234" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("train") and "7/10 steps" in last and "loss 0.1234" in last and "5.0 img/s" in last


def test_fields_read_a_dash_until_set_and_advance_counts(capsys):
    with ProgressBar("encode", 4, fields={"loss": "loss {}"}) as bar:
        bar.advance(1)
        bar.advance(2)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3/4" in last and "loss -" in last


def test_a_disabled_bar_writes_nothing(capsys):
    bar = ProgressBar("sample", 5, enabled=False, unit="img", fields={"loss": "loss {}"})
    bar.advance(2)
    bar.update(3, loss="1.0")
    bar.log("not shown")
    bar.close()
    assert capsys.readouterr() == ("", "")
