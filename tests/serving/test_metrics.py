"""/metrics with hostile model folder names: no raw control or bidi character in a label, and
every line still in the Prometheus text format."""

from __future__ import annotations

import re

from popef.escaping import escape_text
from popef.serving import InferenceCore, ModelRepository
from popef.serving.metrics import render_metrics

from .conftest import write_model

#: a colour, a bell, a terminal title, a forged sample line, a bidi override, quote, backslash
EVIL = 'm\x1b[31mred\x07\x1b]0;t\x07\nnv_inference_count{model="x"} 1\u202egnp.exe"\\\x9b'
SAMPLE = re.compile(r'^(\w+)\{model="((?:[^"\\\n]|\\[\\"n])*)",version="(\d+)"\} (\d+)$')


def _unescape(value: str) -> str:
    return re.sub(r'\\([\\"n])', lambda m: "\n" if m[1] == "n" else m[1], value)


def test_model_names_in_labels_are_escaped_and_the_exposition_parses(tmp_path):
    write_model(tmp_path, EVIL)
    repository = ModelRepository(tmp_path)
    try:
        repository.load_all()
        assert repository.record(EVIL).state == "READY", repository.record(EVIL).reason
        text = render_metrics(InferenceCore(repository))
    finally:
        repository.close()
    assert all(c.isprintable() or c == "\n" for c in text), repr(text)
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == 10
    for line in samples:
        match = SAMPLE.match(line)
        assert match, line
        assert _unescape(match[2]) == escape_text(EVIL)
