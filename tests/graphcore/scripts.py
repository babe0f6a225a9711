"""Graphcore-style callers, written as the public ones are: used in-process by the tests and
written out as scripts for ``python -m popef.graphcore``."""

from __future__ import annotations


def compress_popef(popef, source: str, target: str) -> None:
    """The rewrite loop of Graphcore's ``compress_popef.py``: every blob copied, executables
    compressed."""
    reader = popef.Reader()
    reader.parseFile(source)
    writer = popef.Writer(target)
    for metadata in reader.metadata():
        writer.writeMetadata(metadata)
    for executable in reader.executables():
        content = executable.executable()
        blob = writer.createExecutable(executable.name, True)
        blob.write(content, len(content))
    for tensor in reader.tensors():
        blob = writer.createTensorData(tensor.info)
        blob.write(tensor.data().tobytes(), tensor.info.tensorInfo().sizeInBytes())
    for feed in reader.feeds():
        blob = writer.createFeedData(feed.info)
        data = feed.data().tobytes()
        blob.write(data, len(data))
    for opaque in reader.opaqueBlobs():
        blob = writer.createOpaqueBlob(opaque.name, opaque.executable)
        data = opaque.data()
        blob.write(data, len(data))
    writer.close()


# A script as users of the Poplar SDK write them: read metadata and anchors, rewrite the file
# with a compressed executable, run the model with model_runtime (mmdeploy's calls).
GRAPHCORE_SCRIPT = """
import sys
from datetime import timedelta

import numpy as np

import model_runtime
import popef

source, target = sys.argv[1], sys.argv[2]
reader = popef.Reader()
reader.parseFile(source)
md = reader.metadata()[0]
assert md.executable() == reader.executables()[0].name
print("executable", md.executable(), "replicas", md.replicationFactor(),
      "iterations", md.deviceIterations(), "main", md.programFlow().main(),
      "programs", md.programsMap())
for anchor in md.anchors():
    info = anchor.tensorInfo()
    print("anchor", anchor.name(), anchor.handle(), anchor.programs(), anchor.isPerReplica(),
          anchor.type().name, info.dataType().name, info.shape(), info.sizeInBytes())

writer = popef.Writer(target)
for metadata in reader.metadata():
    writer.writeMetadata(metadata)
for executable in reader.executables():
    content = executable.executable()
    blob = writer.createExecutable(executable.name, True)
    blob.write(content, len(content))
for tensor in reader.tensors():
    blob = writer.createTensorData(tensor.info)
    blob.write(tensor.data().tobytes(), tensor.info.tensorInfo().sizeInBytes())
writer.close()

config = model_runtime.ModelRunnerConfig()
config.device_wait_config = model_runtime.DeviceWaitConfig(
    model_runtime.DeviceWaitStrategy.WAIT_WITH_TIMEOUT,
    timeout=timedelta(seconds=600), sleepTime=timedelta(seconds=1))
runner = model_runtime.ModelRunner(target, config=config)
view = model_runtime.InputMemoryView()
for desc in runner.getExecuteInputs():
    view[desc.name] = np.arange(np.prod(desc.shape)).reshape(desc.shape).astype(
        popef.popefTypeToNumpyDType(desc.data_type))
result = runner.executeAsync(view)
result.wait()
for desc in runner.getExecuteOutputs():
    out = np.frombuffer(result[desc.name],
                        dtype=popef.popefTypeToNumpyDType(desc.data_type)).reshape(desc.shape)
    print("output", desc.name, out.ravel().tolist())
"""
