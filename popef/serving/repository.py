"""The model repository: models found on disk, loaded, versioned and unloaded.

Layout (Triton's, with Graphcore's Poplar backend conventions)::

    <repository>/<model>/config.pbtxt              optional: completed from the file when absent
    <repository>/<model>/<version>/executable.popef   or the file default_model_filename names,
                                                      or every *.popef file of the folder
    <repository>/<model>/<version>/name_map.json   optional: PopEF anchor name -> served name

Folders named by a number are versions; the config's ``version_policy`` picks those served
(the latest one by default). As in Triton, a number with leading zeros (``007``) is not a
version: the folder is ignored with a warning. As in Triton, the versions a ``specific``
policy names without a folder are logged (here once per load, summarised) and not served; the
model loads with those that have one, so the repository index lists only real version
folders. Every model and every version loads on its own: one that fails is recorded as
UNAVAILABLE with the reason — shown by the repository index and logged — and never stops the
others. Loads and unloads of one model run one at a time; those of different models run side
by side (a model draining its requests never holds up the others).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..escaping import shorten
from ..servable import (
    DEFAULT_EXECUTOR,
    DEFAULT_MODEL_FILENAME,
    ConfigError,
    ModelParameters,
    build_plan,
    check_backend,
    complete_config,
    read_config,
    specific_versions,
)
from ..servable.errors import (
    ServingError,
    Status,
    error_message,
    invalid,
    not_found,
    unavailable,
)
from ..servable.version_folder import model_files, open_model, open_runner
from .logs import STATE_CHANGE
from .options import DEFAULT_MAX_QUEUE_SIZE
from .served import ServedModel

__all__ = [
    "LOADING",
    "READY",
    "UNAVAILABLE",
    "UNLOADING",
    "ModelRecord",
    "ModelRepository",
    "RepositoryOptions",
    "VersionRecord",
    "check_model_name",
    "parse_version",
]

log = logging.getLogger("popef.serving")

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"
UNLOADING = "UNLOADING"

_VERSION_RE = re.compile(r"[0-9]{1,18}")
#: a version folder's name: a number without leading zeros (Triton's rule)
_VERSION_FOLDER_RE = re.compile(r"0|[1-9][0-9]{0,17}")


def parse_version(text: str) -> int:
    """A request's version string as a number, refused with Triton's messages (INVALID_ARG)."""
    if text.startswith("-") and text[1:].isdigit() and text[1:].isascii():
        raise invalid(
            f"invalid model version specified '{shorten(text, 200)}' , version "
            "should be an integral value > 0"
        )
    if not _VERSION_RE.fullmatch(text):
        raise invalid(
            f"failed to get model version from specified version string "
            f"'{shorten(text, 200)}' (details: stol), version should be an integral "
            "value > 0"
        )
    return int(text)


def check_model_name(name: str) -> None:
    """Refuse a model name (of a load or unload request) that is not one folder name of the
    repository: empty, hidden (``.``, ``..``), with a path separator or a NUL."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise invalid(
            f"model name '{name}' is not a model of the repository: expected the "
            "name of a folder in it, without '/', '\\' or a leading '.'"
        )


@dataclass
class RepositoryOptions:
    executor: str = DEFAULT_EXECUTOR  # used when a config names none
    executor_options: dict = field(default_factory=dict)
    auto_complete: bool = True
    default_max_batch_size: int | None = None  # None: Graphcore's rule
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    config_name: str | None = None  # --model-config-name


@dataclass
class VersionRecord:
    version: int
    state: str
    reason: str = ""
    served: ServedModel | None = None


@dataclass
class ModelRecord:
    name: str
    directory: Path | None
    state: str = UNAVAILABLE
    reason: str = ""
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    config: object | None = None  # the completed ModelConfig when a version loaded
    requested: bool = True  # asked to be loaded (counts for strict readiness)

    def ready_versions(self) -> list[VersionRecord]:
        return [v for v in self.versions.values() if v.state == READY and v.served is not None]


class ModelRepository:
    """Models of one or more repository folders (``--model-repository`` may repeat)."""

    def __init__(
        self, paths: str | Path | Sequence[str | Path], options: RepositoryOptions | None = None
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        for path in self.paths:
            if not path.is_dir():
                raise invalid(f"model repository '{path}' is not a folder")
        self.options = options or RepositoryOptions()
        self._records: dict[str, ModelRecord] = {}
        self._lock = threading.Lock()  # guards _records and _admin_locks
        self._admin_locks: dict[str, threading.Lock] = {}  # one load or unload of a model at a time

    @contextmanager
    def _administering(self, name: str) -> Iterator[None]:
        """Hold model ``name``'s load/unload lock (other models' are free meanwhile)."""
        with self._lock:
            lock = self._admin_locks.setdefault(name, threading.Lock())
        with lock:
            yield

    # ---- discovery
    def scan(self) -> dict[str, Path]:
        """Model folders by name, over every repository path."""
        found: dict[str, Path] = {}
        for root in self.paths:
            try:
                entries = sorted(root.iterdir())
            except OSError as exc:
                log.error("cannot read model repository '%s': %s", root, exc)
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                if entry.name in found:
                    log.error(
                        "model '%s' is in two repositories ('%s' and '%s'); serving the first",
                        entry.name,
                        found[entry.name],
                        entry,
                    )
                    continue
                found[entry.name] = entry
        return found

    # ---- loading
    def load_all(self, names: Iterable[str] | None = None) -> None:
        """Load every model (or those named); models not named are listed as not loaded."""
        found = self.scan()
        wanted = set(found) if names is None or "*" in set(names or ()) else set(names)
        for name in sorted(found):
            if name in wanted:
                self.load(name, raise_on_error=False)
            else:
                with self._lock:
                    self._records.setdefault(
                        name,
                        ModelRecord(name, found[name], UNAVAILABLE, "not loaded", requested=False),
                    )
        for name in sorted(wanted - set(found)):
            log.error(
                "cannot load model '%s': no such folder in the model repository",
                name,
                extra=STATE_CHANGE,
            )
            with self._lock:
                self._records[name] = ModelRecord(
                    name, None, UNAVAILABLE, "no such folder in the model repository"
                )

    def load(
        self,
        name: str,
        config=None,
        *,
        states_max_batch_size: bool = False,
        raise_on_error: bool = True,
    ) -> ModelRecord:
        """Load (or reload) a model; ``config`` replaces its config.pbtxt for this load.

        Returns its record. With ``raise_on_error``, a model with no ready version raises a
        :class:`ServingError` giving the reason (the record keeps it too).
        """
        with self._administering(name):
            directory = self.scan().get(name)
            if directory is None:
                if raise_on_error:
                    raise ServingError(
                        f"failed to load '{name}', failed to poll from model "
                        f"repository: there is no folder '{name}' in the model "
                        "repository",
                        Status.INTERNAL,
                    )
                return ModelRecord(name, None, UNAVAILABLE, "not found")
            log.info("loading: %s", name, extra=STATE_CHANGE)
            with self._lock:
                old = self._records.get(name)
                if old is None or not old.ready_versions():
                    placeholder = ModelRecord(name, directory, LOADING)
                    self._records[name] = placeholder
            record = self._load_record(name, directory, config, states_max_batch_size)
            if old is not None and old.ready_versions() and not record.ready_versions():
                # like Triton: a failed reload leaves the loaded versions serving
                log.error(
                    "failed to reload '%s'; the loaded versions stay: %s",
                    name,
                    record.reason,
                    extra=STATE_CHANGE,
                )
                if raise_on_error:
                    raise _load_error(record)
                return old
            with self._lock:
                self._records[name] = record
            if old is not None:
                self._close_record(old)
            if record.state != READY:
                if raise_on_error:
                    raise _load_error(record)
            return record

    def _load_record(
        self, name: str, directory: Path, override, override_states_mbs: bool
    ) -> ModelRecord:
        record = ModelRecord(name, directory, LOADING)
        try:
            if override is not None:
                config, states_mbs = override, override_states_mbs
            else:
                config, states_mbs = read_config(directory, self.options.config_name)
            if config is not None:
                check_backend(config)  # before the version folders: an ensemble has none
            parameters = ModelParameters.of(config) if config is not None else ModelParameters()
            versions, missing = _select_versions(directory, config)
        except ServingError as exc:
            record.state, record.reason = UNAVAILABLE, exc.message
            log.error("failed to load '%s': %s", name, exc.message, extra=STATE_CHANGE)
            return record
        if missing:
            log.error(
                "model '%s': version_policy specific names %s, which %s no folder; %s not served",
                name,
                _versions_summary(missing),
                "has" if len(missing) == 1 else "have",
                "it is" if len(missing) == 1 else "they are",
                extra=STATE_CHANGE,
            )
        completed = None
        for version in sorted(versions, reverse=True):  # the latest completes the config
            vrecord = VersionRecord(version, LOADING)
            record.versions[version] = vrecord
            try:
                served, completed = self._load_version(
                    name, directory, version, config, states_mbs, completed, parameters
                )
            except Exception as exc:  # noqa: BLE001 - one broken model never stops the others
                reason = error_message(exc)
                vrecord.state, vrecord.reason = UNAVAILABLE, reason
                log.error(
                    "failed to load '%s' version %d: %s", name, version, reason, extra=STATE_CHANGE
                )
                continue
            vrecord.state, vrecord.served = READY, served
            log.info("successfully loaded '%s' version %d", name, version, extra=STATE_CHANGE)
        record.config = completed if completed is not None else config
        failed = [v for v in record.versions.values() if v.state != READY]
        if record.ready_versions() and not failed:
            record.state = READY
            record.reason = f"{_versions_summary(missing)} not served: no folder" if missing else ""
        elif record.ready_versions():
            record.state = READY
            record.reason = f"version {failed[0].version} failed: {failed[0].reason}"
        else:
            record.state = UNAVAILABLE
            record.reason = failed[0].reason if failed else "no version to load"
        return record

    def _load_version(
        self,
        name: str,
        directory: Path,
        version: int,
        config,
        states_mbs: bool,
        completed,
        parameters: ModelParameters,
    ):
        vdir = directory / str(version)
        files = model_files(vdir, config.default_model_filename if config is not None else "")
        executor = parameters.executor or self.options.executor
        executor_options = {**self.options.executor_options, **parameters.executor_options}
        instances = _instance_count(config)
        runner, signature = open_model(vdir, files, executor, executor_options)
        runners = [runner]
        try:
            if completed is None:
                completed = complete_config(
                    config,
                    name,
                    signature,
                    states_max_batch_size=states_mbs,
                    auto_complete=self.options.auto_complete,
                    default_max_batch_size=self.options.default_max_batch_size,
                    model_filename=files[0].name if len(files) == 1 else None,
                )
            plan = build_plan(completed, signature, directory)
            for _ in range(instances - 1):
                runners.append(open_runner(files, executor, executor_options))
            served = ServedModel(
                name,
                version,
                plan,
                runners,
                vdir,
                files,
                max_queue_size=self.options.max_queue_size,
            )
            log.info(
                "model '%s' version %d runs on executor '%s': %s",
                name,
                version,
                executor,
                runner.executor.describe(),
            )
            if plan.parameters.unknown:
                log.warning(
                    "model '%s': parameters not used by this server: %s",
                    name,
                    ", ".join(plan.parameters.unknown),
                )
        except BaseException:
            for runner in runners:
                runner.close()
            raise
        return served, completed

    # ---- unloading
    def unload(self, name: str) -> None:
        with self._administering(name):
            with self._lock:
                record = self._records.get(name)
            if record is None:
                # as Triton: unloading a model that was never loaded (or does not exist)
                # succeeds and changes nothing
                log.info("unload of '%s': the model is not loaded, nothing to do", name)
                return
            log.info("unloading: %s", name, extra=STATE_CHANGE)
            for v in record.versions.values():
                if v.state == READY:
                    v.state = UNLOADING
            self._close_record(record)
            with self._lock:
                self._records[name] = ModelRecord(
                    name,
                    record.directory,
                    UNAVAILABLE,
                    "unloaded",
                    {v: VersionRecord(v, UNAVAILABLE, "unloaded") for v in record.versions},
                    requested=False,
                )

    def _close_record(self, record: ModelRecord, timeout: float | None = 60) -> None:
        for v in record.versions.values():
            if v.served is None:
                continue
            if v.served.close(drain=True, timeout=timeout):
                log.info(
                    "successfully unloaded '%s' version %d",
                    record.name,
                    v.version,
                    extra=STATE_CHANGE,
                )
            else:
                log.warning(
                    "unloading '%s' version %d: an execution still runs after %g s; "
                    "its queued requests were refused and it finishes unloading when "
                    "that execution ends",
                    record.name,
                    v.version,
                    timeout,
                    extra=STATE_CHANGE,
                )
            v.served = None

    def close(self, timeout: float | None = 30) -> None:
        """Unload everything: queued requests run first (up to ``timeout`` per model)."""
        with self._lock:
            records = list(self._records.values())
        for record in records:
            with self._administering(record.name):
                self._close_record(record, timeout)

    # ---- lookups
    def get(self, name: str, version: str = "") -> ServedModel:
        """The model version a request goes to: the named one, or the latest ready one.

        Errors start with Triton's text (``Request for unknown model: 'm' ...``, its status
        codes too); what follows it is ours.
        """
        record = self._records.get(name)
        if record is None:
            raise not_found(f"Request for unknown model: '{name}' is not found")
        if version:
            number = parse_version(version)
            vrecord = record.versions.get(number)
            if vrecord is None:
                raise not_found(
                    f"Request for unknown model: '{name}' version {number} is not "
                    f"found (versions: {_versions_text(record)})"
                )
            if vrecord.state != READY or vrecord.served is None:
                raise unavailable(
                    f"Request for unknown model: '{name}' version "
                    f"{vrecord.version} is not at ready state ({vrecord.state}"
                    f"{': ' + vrecord.reason if vrecord.reason else ''})"
                )
            return vrecord.served
        ready = record.ready_versions()
        if not ready:
            why = f": {record.reason}" if record.reason else ""
            raise not_found(
                f"Request for unknown model: '{name}' has no available versions "
                f"({record.state}{why})"
            )
        return max(ready, key=lambda v: v.version).served

    def record(self, name: str) -> ModelRecord:
        record = self._records.get(name)
        if record is None:
            raise not_found(f"Request for unknown model: '{name}' is not found")
        return record

    def records(self) -> list[ModelRecord]:
        with self._lock:
            return [self._records[n] for n in sorted(self._records)]

    def served_models(self) -> list[ServedModel]:
        return [
            v.served
            for r in self.records()
            for v in sorted(r.versions.values(), key=lambda v: v.version)
            if v.served is not None
        ]

    def is_ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except ServingError:
            return False
        return True

    def all_ready(self) -> bool:
        """Strict readiness: every model asked to load has every version ready."""
        for record in self.records():
            if record.requested and (
                record.state != READY or any(v.state != READY for v in record.versions.values())
            ):
                return False
        return True

    def index(self, ready_only: bool = False) -> list[dict]:
        """The repository index: ``{name, version, state, reason}`` per model version."""
        on_disk = self.scan()
        records = {r.name: r for r in self.records()}
        entries = []
        for name in sorted(set(on_disk) | set(records)):
            record = records.get(name)
            if record is None:
                if not ready_only:
                    entries.append(
                        {"name": name, "version": "", "state": UNAVAILABLE, "reason": "not loaded"}
                    )
                continue
            if not record.versions:
                if not ready_only:
                    entries.append(
                        {
                            "name": name,
                            "version": "",
                            "state": record.state,
                            "reason": record.reason,
                        }
                    )
                continue
            for v in sorted(record.versions.values(), key=lambda v: v.version):
                if ready_only and v.state != READY:
                    continue
                entries.append(
                    {"name": name, "version": str(v.version), "state": v.state, "reason": v.reason}
                )
        return entries


def _load_error(record: ModelRecord) -> ServingError:
    """Why a load failed, in Triton's words: a model whose folder or config could not be read
    failed to poll (INTERNAL); one whose versions failed names each (INVALID_ARG)."""
    failed = [
        v for v in sorted(record.versions.values(), key=lambda v: v.version) if v.state != READY
    ]
    if not failed:
        return ServingError(
            f"failed to load '{record.name}', failed to poll from model "
            f"repository: {record.reason}",
            Status.INTERNAL,
        )
    reasons = "".join(f"version {v.version} is at {v.state} state: {v.reason};" for v in failed)
    return ServingError(f"load failed for model '{record.name}': {reasons}", Status.INVALID_ARG)


def _versions_text(record: ModelRecord) -> str:
    return ", ".join(str(v) for v in sorted(record.versions)) or "none"


def _instance_count(config) -> int:
    if config is None or not config.instance_group:
        return 1
    return sum(max(1, g.count) for g in config.instance_group)


def _versions_summary(versions: Sequence[int], shown: int = 5) -> str:
    """``version 5`` or ``versions 5, 7, 9 … (N more)``: a bounded list of version numbers."""
    if len(versions) == 1:
        return f"version {versions[0]}"
    text = ", ".join(str(v) for v in versions[:shown])
    if len(versions) > shown:
        text += f" \u2026 ({len(versions) - shown} more)"
    return f"versions {text}"


def _select_versions(directory: Path, config) -> tuple[list[int], list[int]]:
    """The versions the policy serves, and versions a ``specific`` policy names that have no
    folder (:class:`ConfigError` when none it names has one)."""
    available, ignored = [], []
    for p in sorted(directory.iterdir()):
        if not p.is_dir():
            continue
        if _VERSION_FOLDER_RE.fullmatch(p.name):
            available.append(int(p.name))
        elif p.name.isdecimal():
            ignored.append(p.name)
            log.warning(
                "model '%s': ignoring folder '%s': a version folder's name is a number "
                "without leading zeros, of 18 digits at most",
                directory.name,
                p.name,
            )
    available.sort()
    wanted = specific_versions(config)
    if wanted is not None:
        present = set(available)
        found = [v for v in wanted if v in present]
        missing = [v for v in wanted if v not in present]
        if not found:
            folders = (
                _versions_summary(available).replace("version", "folder", 1)
                if available
                else "no version folder"
            )
            raise ConfigError(
                f"version_policy specific names {_versions_summary(missing)}, "
                f"but '{directory.name}' has no such folder (it has {folders})"
            )
        return found, missing
    if not available:
        listed = ", ".join(f"'{n}'" for n in ignored)
        not_versions = (
            f"; {listed} "
            f"{'is not one' if len(ignored) == 1 else 'are not'}: a version "
            "folder's name is a number without leading zeros"
            if ignored
            else ""
        )
        raise ConfigError(
            f"no version folder (such as 1/ holding {DEFAULT_MODEL_FILENAME}) in "
            f"'{directory.name}'{not_versions}"
        )
    policy = (
        config.version_policy if config is not None and config.HasField("version_policy") else None
    )
    kind = policy.WhichOneof("policy_choice") if policy is not None else None
    if kind == "all":
        return available, []
    count = policy.latest.num_versions if kind == "latest" else 1
    return available[-max(1, count) :], []
