"""A small stand-in for Triton's ``triton_python_backend_utils`` (``pb_utils``), for unit tests.

The real module exists only inside Triton's stub process (its ``Tensor``, ``InferenceRequest``,
``InferenceResponse`` and ``TritonError`` are C++ classes the stub injects). This fake has the
same names and the methods the backend uses; ``ModelConfig`` follows the checks of the real
``triton_python_backend_utils.py`` (Triton 2.51) for ``set_max_batch_size``, ``add_input``,
``add_output`` and ``set_dynamic_batching``. Tests install it as
``sys.modules["triton_python_backend_utils"]``.
"""

from __future__ import annotations

import json
import typing

import numpy as np


class TritonError:
    (
        UNKNOWN,
        INTERNAL,
        NOT_FOUND,
        INVALID_ARG,
        UNAVAILABLE,
        UNSUPPORTED,
        ALREADY_EXISTS,
        CANCELLED,
    ) = range(8)

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array) -> None:
        if not isinstance(array, np.ndarray):
            raise TypeError("Tensor takes a numpy array")
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceRequest:
    def __init__(self, inputs, requested_output_names=(), model_name: str = "") -> None:
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self.model_name = model_name

    def inputs(self):
        return list(self._inputs)

    def requested_output_names(self):
        return list(self._requested)


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None) -> None:
        self._outputs = list(output_tensors)
        self._error = error

    def output_tensors(self):
        return list(self._outputs)

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str):
    for tensor in request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(response: InferenceResponse, name: str):
    for tensor in response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


class Logger:
    messages: typing.ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.messages.append(("info", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.messages.append(("warn", message))

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.messages.append(("error", message))

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls.messages.append(("verbose", message))


class ModelConfig:
    """``pb_utils.ModelConfig`` as Triton 2.51's ``auto_complete_config`` receives it."""

    def __init__(self, model_config: str) -> None:
        self._model_config = json.loads(model_config)

    def as_dict(self) -> dict:
        return self._model_config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        if self._model_config["max_batch_size"] > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size "
                f"{self._model_config['max_batch_size']}, but in "
                f"auto-complete-config function for model "
                f"'{self._model_config['name']}' specified max_batch_size "
                f"{max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._model_config:
                raise ValueError(f"Configuration specified scheduling_choice as '{other}'")
        self._model_config.setdefault("dynamic_batching", {})

    def _add(self, kind: str, item: dict, valid: tuple[str, ...]) -> None:
        for key in item:
            if key not in valid:
                raise ValueError(
                    f"{kind} '{item.get('name')}' contains property other than {valid}"
                )
        for key in ("name", "data_type", "dims"):
            if key not in item:
                raise ValueError(f"{kind} is missing '{key}' property")
        for current in self._model_config[kind]:
            if current["name"] != item["name"]:
                continue
            if current["data_type"] != "TYPE_INVALID" and current["data_type"] != item["data_type"]:
                raise ValueError(
                    f"unable to load model '{self._model_config['name']}', "
                    f"configuration expects datatype {current['data_type']} for "
                    f"{kind} '{item['name']}', model provides {item['data_type']}"
                )
            if current["dims"] and current["dims"] != item["dims"]:
                raise ValueError(
                    f"model '{self._model_config['name']}', tensor "
                    f"'{item['name']}': the model expects dims {item['dims']} but "
                    f"the model configuration specifies dims {current['dims']}"
                )
            current["data_type"] = item["data_type"]
            current["dims"] = item["dims"]
            return
        self._model_config[kind].append(dict(item))

    def add_input(self, input: dict) -> None:
        self._add("input", input, ("name", "data_type", "dims", "optional"))

    def add_output(self, output: dict) -> None:
        self._add("output", output, ("name", "data_type", "dims"))


def triton_config(name: str, **fields) -> dict:
    """A config dict shaped like Triton's JSON (every top-level field present)."""
    config = {
        "name": name,
        "platform": "",
        "backend": "poplar",
        "runtime": "model.py",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 0,
        "input": [],
        "output": [],
        "batch_input": [],
        "batch_output": [],
        "optimization": {
            "priority": "PRIORITY_DEFAULT",
            "input_pinned_memory": {"enable": True},
            "output_pinned_memory": {"enable": True},
            "gather_kernel_buffer_threshold": 0,
            "eager_batching": False,
        },
        "instance_group": [
            {
                "name": name,
                "kind": "KIND_CPU",
                "count": 1,
                "gpus": [],
                "secondary_devices": [],
                "profile": [],
                "passive": False,
                "host_policy": "",
            }
        ],
        "default_model_filename": "",
        "cc_model_filenames": {},
        "metric_tags": {},
        "parameters": {},
        "model_warmup": [],
    }
    config.update(fields)
    return config
