"""Progress for long work: a text bar on a terminal, nothing for quick work."""

import io

import straightline_sdk as straightline
from straightline_sdk.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_text_bar_on_a_terminal_counts_items_and_failures():
    out = Terminal()
    with Progress("f.map", total=10, delay_s=0.0, stream=out) as bar:
        bar.advance(4)
        bar.advance(6, errors=1)
    text = out.getvalue()
    assert "f.map [" in text and "10/10, 1 failed" in text and text.endswith("\n")


def test_quick_work_shows_nothing():
    out = Terminal()
    with Progress("f.map", total=10, delay_s=60.0, stream=out) as bar:
        bar.advance(10)
    assert out.getvalue() == ""


def test_steps_of_work_of_unknown_length_print_a_line_each():
    out = io.StringIO()
    with Progress("building", delay_s=0.0, stream=out) as bar:
        bar.step("Step 1/3 : FROM python:3.11-slim")
        bar.step("Step 2/3 : COPY . /app")
    assert out.getvalue().splitlines() == ["building: Step 1/3 : FROM python:3.11-slim",
                                           "building: Step 2/3 : COPY . /app"]


def test_progress_can_be_turned_off():
    straightline.configure(progress=False)
    out = Terminal()
    with Progress("f.map", total=3, delay_s=0.0, stream=out) as bar:
        bar.advance(3)
    assert out.getvalue() == ""
