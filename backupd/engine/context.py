"""Everything one engine operation needs, built once from the config: destinations, keys, catalog, clock."""

from __future__ import annotations

import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from backupd.destinations.base import Destination
from backupd.destinations.registry import open_destination
from backupd.engine.catalog import Catalog
from backupd.state.db import state_db_path
from backupd.engine.crypto import Keyring
from backupd.engine.pagecache import PageHashCache
from backupd.errors import SourceBusy, UsageError

if TYPE_CHECKING:
    from backupd.config import Config


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Target:
    """A destination together with how this backupd writes to it."""

    name: str
    dest: Destination
    keyring: Keyring | None
    compression_level: int
    priority: int


@dataclass
class EngineContext:
    config: Config
    catalog: Catalog
    targets: dict[str, Target]
    pagecache: PageHashCache
    state_dir: Path
    copy_selection: str  # which copy to read first: `[restore] copy_selection`, or this operation's own
    now: Callable[[], datetime] = utc_now
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="zstd"))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.catalog.close()

    def enabled_targets(self) -> list[Target]:
        return sorted((t for t in self.targets.values()), key=lambda t: t.priority)

    def only(self, names: list[str] | tuple[str, ...]) -> EngineContext:
        """This context writing to the named enabled destinations only (shares its catalog and threads:
        close the original, not this)."""
        self.config.chosen_destinations(names)
        if not names:
            raise UsageError("choose at least one destination, or none to use every enabled one")
        return replace(self, targets={n: t for n, t in self.targets.items() if n in names})

    @contextmanager
    def source_lock(self, source: str, wait_s: float = 0.0) -> Iterator[None]:
        """One operation that writes a source's backups at a time (a kernel lock: a crash releases it);
        waits up to `wait_s` for another operation to finish, then raises SourceBusy."""
        lock_dir = self.state_dir / "locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{source}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise SourceBusy(
                            f"another backupd operation is running on source {source!r}",
                            hint="wait for it to finish; the lock is released when that process exits",
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def all_sources_locked(self, wait_s: float) -> Iterator[None]:
        """Every configured source's lock, taken in name order (so two holders of several never deadlock)."""
        with ExitStack() as stack:
            for name in sorted(s.name for s in self.config.sources):
                stack.enter_context(self.source_lock(name, wait_s))
            yield


def keyring_for(dcfg) -> Keyring | None:
    enc = dcfg.encryption
    if enc is None:
        return None
    if enc.key_file is not None:
        return Keyring.from_key_file(enc.key_file)
    return Keyring.from_passphrase(os.environ[enc.passphrase_env], enc.passphrase_env)


def open_context(config: Config, *, copy_selection: str | None = None,
                 now: Callable[[], datetime] = utc_now) -> EngineContext:
    """The context of one operation on `config`; `copy_selection` overrides `[restore] copy_selection`
    for this operation only (None keeps it)."""
    state_dir = Path(config.state.dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    targets = {
        d.name: Target(d.name, open_destination(d), keyring_for(d), d.compression_level, d.priority)
        for d in config.enabled_destinations()
    }
    return EngineContext(
        config=config,
        catalog=Catalog(state_db_path(state_dir)),
        targets=targets,
        pagecache=PageHashCache(state_dir),
        state_dir=state_dir,
        copy_selection=copy_selection or config.restore.copy_selection,
        now=now,
    )
