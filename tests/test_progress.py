"""Progress for long work: a tqdm bar for maps, announced slow phases and a final
state for deploys, nothing for quick work. The clock is a test's own, so no test
depends on how fast this machine is."""

import io

import straightline_sdk as straightline
from straightline_sdk.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_text_bar_on_a_terminal_counts_items_and_failures():
    out = Terminal()
    with Progress("f.map", total=10, delay_s=0.0, stream=out) as bar:
        bar.advance(4)
        bar.advance(6, errors=1)
    text = out.getvalue()
    assert "f.map" in text and "10/10" in text and "1 failed" in text and text.endswith("\n")


def test_quick_work_shows_nothing():
    out = Terminal()
    with Progress("f.map", total=10, delay_s=60.0, stream=out) as bar:
        bar.advance(10)
    assert out.getvalue() == ""
    out = io.StringIO()
    clock = Clock()
    with Progress("deploying f to docker", delay_s=1.0, stream=out, clock=clock, tick_s=None) as p:
        p.step("starting a container of straightline/f:1")
        clock.now += 0.4
        p.tick()
    assert out.getvalue() == "" and p.summary == "container started in 0.4 s"


def test_a_slow_phase_is_announced_while_it_runs_and_the_end_says_what_happened():
    out = io.StringIO()
    clock = Clock()
    with Progress("deploying f to docker", delay_s=1.0, stream=out, clock=clock, tick_s=None) as p:
        p.step("checking the engine")              # quick: never announced
        clock.now += 0.2
        p.step("building straightline-deps:ab")
        p.step("Step 1/3 : FROM python:3.11-slim")  # a detail before the phase is slow: quiet
        clock.now += 1.5
        p.tick()                                    # the timer: the phase is now slow
        p.step("Step 2/3 : RUN pip install numpy")
        clock.now += 0.3
        p.tick()                                    # a quick detail: quiet
        p.step("Step 3/3 : RUN pip install pandas")
        clock.now += 5.0
        p.tick()                                    # a slow detail: shown, with the phase's time
        clock.now += 5.0
        p.step("building straightline/f:cd")
        clock.now += 0.3
        p.step("starting a container of straightline/f:cd")
        clock.now += 1.2
        p.tick()
    assert out.getvalue().splitlines() == [
        "deploying f to docker: building straightline-deps:ab: Step 1/3 : FROM python:3.11-slim (1.5 s)",
        "deploying f to docker: building straightline-deps:ab: Step 3/3 : RUN pip install pandas (6.8 s)",
        "deploying f to docker: starting a container of straightline/f:cd (1.2 s)",
        "deploying f to docker: checking the engine done in 0.2 s, 2 images built in 12 s, "
        "container started in 1.2 s",
    ]


def test_a_failed_deploy_ends_saying_where_it_failed():
    out = io.StringIO()
    clock = Clock()
    try:
        with Progress("deploying f to docker", delay_s=1.0, stream=out, clock=clock, tick_s=None) as p:
            p.step("building straightline/f:cd")
            clock.now += 2.0
            p.tick()
            raise RuntimeError("no space left")
    except RuntimeError:
        pass
    assert out.getvalue().splitlines()[-1] == (
        "deploying f to docker: failed after 2.0 s, while building straightline/f:cd: RuntimeError")


def test_the_notebook_widget_ends_in_its_final_state(monkeypatch):
    import straightline_sdk.progress as progress
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    clock = Clock()
    with Progress("deploying f to docker", delay_s=1.0, clock=clock, tick_s=None) as p:
        p.step("starting a container of straightline/f:cd")
        clock.now += 1.5
        p.tick()
        bar, label = p._widget.children
        assert "starting a container" in label.value and label.value.endswith("…")
    assert "container started in 1.5 s" in label.value and "…" not in label.value
    assert bar.bar_style == "success"


def test_progress_can_be_turned_off():
    straightline.configure(progress=False)
    out = Terminal()
    with Progress("f.map", total=3, delay_s=0.0, stream=out) as bar:
        bar.advance(3)
    assert out.getvalue() == ""
    with Progress("deploying", delay_s=0.0, stream=out) as p:
        p.step("building x")
    assert out.getvalue() == ""
