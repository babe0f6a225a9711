"""The backend's lines in Triton's log carry model and instance names escaped."""

from __future__ import annotations

import sys

from popef.triton import backend

from . import fake_pb_utils as pb


def test_names_in_the_backends_log_lines_are_escaped(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.setattr(pb.Logger, "messages", [])
    backend._log("info", "model 'm\x1b[31m\r\nE0101 forged\u202e' instance 'i\x9b': ready")
    ((level, message),) = pb.Logger.messages
    assert level == "info"
    assert message == "model 'm\\x1b[31m\\r\\nE0101 forged\\u202e' instance 'i\\x9b': ready"
