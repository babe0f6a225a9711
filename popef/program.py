"""The graph program, under its documented name: a re-export of ``popef.runtime.program``.

The graph program belongs to the runtime (``popef.runtime.program`` holds it, with its
encoder and decoder); this module keeps ``from popef.program import ...`` working, as
docs/runtime.md shows it.
"""

from .runtime.program import (  # noqa: F401 - the public names, re-exported
    GRAPH_MAGIC,
    GRAPH_VERSION,
    MAX_GRAPH_PROGRAM_SIZE,
    MAX_GRAPH_STEPS,
    Attribute,
    AttributeKind,
    DeviceToHost,
    GraphProgram,
    HostToDevice,
    Node,
    Program,
    Step,
    __all__,  # noqa: F401
    decode_program,
    encode_program,
    is_graph_program,
    minor_version_of,
)
