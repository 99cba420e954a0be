"""The command line: parses, calls the engine, renders. Exit codes are DESIGN.md's.

0 everything done; 1 some items failed or are invalid; 2 usage or configuration error (also a
locked, corrupt or unwritable state database); 3 interrupted, or a provider stopped.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import click
import structlog
from rich.console import Console
from rich.live import Live

from migrator import log as logsetup
from migrator import progress as progresses
from migrator import report as reports
from migrator.config import Config, JobConfig, SourceConfig, load_config, load_job
from migrator.engine import plan as plans
from migrator.engine.pipeline import Outcome, Pipeline
from migrator.engine.plan import planning
from migrator.engine.source import open_source
from migrator.engine.target import open_provider
from migrator.errors import ConfigError, MigratorError, ProviderError, ProviderStopped, StoreLockedError
from migrator.model import inventory_schema
from migrator.store import Item, State, Store
from migrator.store.lock import RunLock

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 3
T = TypeVar("T")
log = structlog.get_logger("migrator")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="config.toml (default: embedded sandboxes for every provider)",
)
state_option = click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="state database (default: from the config, else state/migrator.db)",
)


#: uvloop where it is installed (every platform but Windows): libuv's event loop and transports,
#: in C, in the engine and in a served sandbox alike. Measured over DataWorks workflows: 2.3 %
#: fewer engine instructions, 1.2 % fewer in the sandbox; a plain aiohttp client and server used
#: about a fifth less CPU, kernel included.
_LOOP = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def _run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` and turn SIGINT/SIGTERM into cancellation (the store's commits are shielded)."""

    async def main() -> T:
        result: list[T] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            async def work() -> None:
                result.append(await fn())
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(work)
        if not result:
            raise KeyboardInterrupt
        return result[0]

    # Everything alive now (modules, pydantic schemas, the HTTP stack) lives until exit: frozen,
    # the cyclic collector stops walking it at every full collection. And a run allocates
    # containers by the million, nearly all freed by reference counting: a young collection
    # every 10,000 of them rather than every 700 halves the collector's share of a run (a
    # tenth of it before), for a few megabytes of cyclic garbage kept a little longer.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        return anyio.run(main, backend_options=_LOOP)
    except BaseExceptionGroup as group:
        # Task groups wrap what a stage raised; a known error is reported as itself.
        known = _first_known(group)
        if known is None:
            raise
        raise known from None


def _first_known(error: BaseException) -> MigratorError | None:
    if isinstance(error, MigratorError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _first_known(inner)) is not None:
                return found
    return None


def _fail(exc: MigratorError) -> int:
    """Print one clear line (secrets scrubbed) and pick the exit code for it."""
    if isinstance(exc, ProviderStopped):
        click.echo(
            f"migrator: {logsetup.scrub(str(exc))}; progress is kept, run the same command again", err=True
        )
        return EXIT_INTERRUPTED
    if isinstance(exc, ProviderError):
        click.echo(
            f"migrator: the provider stopped answering: {logsetup.scrub(str(exc))}; "
            "progress is kept, run the same command again",
            err=True,
        )
        return EXIT_INTERRUPTED
    click.echo(f"migrator: {logsetup.scrub(str(exc))}", err=True)
    return EXIT_INTERRUPTED if isinstance(exc, StoreLockedError) else EXIT_USAGE


def _state(config: Config, state_path: Path | None) -> Path:
    return state_path or config.state


def entry() -> None:
    """The ``migrator`` command: :func:`main`, quiet when its reader goes away (``| head``)."""
    try:
        main()
    except BrokenPipeError:
        _reader_gone()
    except BaseExceptionGroup as group:
        if group.subgroup(BrokenPipeError) is None:
            raise
        _reader_gone()


def _reader_gone() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that raises nothing more.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_OK)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="migrator")
def main() -> None:
    """Migrate scheduler workflows between EMR Data Development, EnOS and DataWorks, resumably."""


@main.command()
@click.argument("job_file", type=click.Path(path_type=Path, dir_okay=False))
@config_option
@state_option
@click.option("--quiet", "-q", is_flag=True, help="only warnings and the summary")
@click.option("--verbose", "-v", is_flag=True, help="debug logging, every call")
@click.option(
    "--prune",
    is_flag=True,
    help="sync: delete at the target what the source no longer has (listed before it is deleted)",
)
def run(
    job_file: Path,
    config_path: Path | None,
    state_path: Path | None,
    quiet: bool,
    verbose: bool,
    prune: bool,
) -> None:
    """Migrate or sync JOB_FILE; resumes by itself from the state database."""
    logsetup.configure(verbose=verbose, quiet=quiet)
    try:
        config = load_config(config_path)
        job = load_job(job_file, config)
        if prune and job.mode != "sync":
            raise ConfigError(f'{job_file}: --prune needs mode = "sync" in [job] (it is {job.mode!r})')
        config.provider(job.target.provider)  # configured, or the error names it
    except MigratorError as exc:
        sys.exit(_fail(exc))
    state = _state(config, state_path)
    console = Console(stderr=True)
    try:
        with RunLock(state, job.name, "run"):
            outcome = _run_async(lambda: _run_job(job, config, state, console, quiet, prune))
    except KeyboardInterrupt:
        console.print("interrupted: progress is checkpointed; run the same command again to resume")
        sys.exit(EXIT_INTERRUPTED)
    except MigratorError as exc:
        sys.exit(_fail(exc))
    _summary(console, job, outcome, prune=prune)
    sys.exit(outcome.exit_code)


async def _run_job(
    job: JobConfig, config: Config, state: Path, console: Console, quiet: bool, prune: bool
) -> Outcome:
    cfg = config.provider(job.target.provider)
    async with (
        await Store.open(state) as store,
        open_source(job.source, config, state) as source,
        open_provider(cfg, state) as (provider, effective),
    ):
        known = sum((await store.counts(job.name)).values())
        tracker = progresses.Tracker(job.name, cfg.name, provider.flow, known)
        pipeline = Pipeline(job, effective, provider, store, source, tracker, prune=prune)
        if console.is_terminal and not quiet:
            view = progresses.LiveProgress(tracker)
            with Live(view, console=console, auto_refresh=False) as live:

                def draw() -> None:
                    tracker.tick()
                    live.refresh()

                outcome = await progresses.watched(pipeline.run, progresses.DRAW_EVERY, draw)
                draw()
                return outcome
        lines = progresses.LogProgress(tracker)

        def line() -> None:
            tracker.tick()
            lines.line()

        outcome = await progresses.watched(pipeline.run, progresses.LOG_EVERY, line)
        tracker.tick()
        lines.line(final=True)
        return outcome


def _summary(console: Console, job: JobConfig, outcome: Outcome, *, prune: bool) -> None:
    counts = outcome.counts
    total = sum(counts.values())
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if outcome.stopped is not None:
        until = outcome.stopped.until
        again = f"after {logsetup.moment(until)}" if until is not None else "once that is fixed"
        verdict = (
            f"stopped: {outcome.stopped}. {outcome.unsettled} items unsettled, none failed by the stop; "
            f"run the same command again {again}"
        )
    else:
        verdict = {
            0: "all done",
            1: "finished with failed or invalid items",
            3: f"stopped with {outcome.unsettled} items unsettled (the provider did not answer); "
            "run the same command again to resume",
        }[outcome.exit_code]
    cost = outcome.cost
    console.print(
        f"{job.name}: {verdict} - {total} items: {parts or 'none'} (run {outcome.run_id}, "
        f"{cost.calls} calls, {cost.retries} retries, {cost.throttled} throttled). "
        f"Details: migrator report {job.path}",
        soft_wrap=True,
    )
    if outcome.pruned:
        names = ", ".join(i.name for i in outcome.pruned)
        console.print(f"pruned: {len(outcome.pruned)} deleted at the target: {names}", soft_wrap=True)
    if outcome.refused:
        console.print(
            f"not pruned: {len(outcome.refused)} gone from the source that the target refused to delete "
            f"(another workflow depends on it, say): {_first_names(outcome.refused)}. "
            f"Each says why: migrator report {job.path}",
            soft_wrap=True,
        )
    done = {i.key for i in [*outcome.pruned, *outcome.refused]}
    left = [i for i in outcome.orphaned if i.target_id and i.key not in done]
    if left:
        names = _first_names(left)
        then = (
            "the run stopped before pruning them"
            if prune
            else f"migrator run {job.path} --prune deletes them"
        )
        console.print(
            f"orphaned: {len(left)} gone from the source but still at the target: {names}. {then}",
            soft_wrap=True,
        )


def _first_names(items: list[Item], shown: int = 20) -> str:
    """The names of the first ``shown`` items, and "..." if there are more."""
    return ", ".join(i.name for i in items[:shown]) + (", ..." if len(items) > shown else "")


def _job_name(job: str | None, store_jobs: list[str]) -> str:
    if job is None:
        if len(store_jobs) == 1:
            return store_jobs[0]
        raise ConfigError("name a job: the state database holds " + (", ".join(store_jobs) or "no jobs yet"))
    path = Path(job)
    if path.suffix == ".toml" and path.exists():
        return load_job(path).name
    return job


@main.command()
@click.argument("job", required=False)
@config_option
@state_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object with a list of jobs, for scripts",
)
def status(job: str | None, config_path: Path | None, state_path: Path | None, fmt: str) -> None:
    """Where each job stands: per target settled/total, the running run's rate and ETA, async jobs
    in flight, parked items. Reads the state database only (no lock: safe while a run writes)."""

    async def show() -> list[dict[str, Any]]:
        config = load_config(config_path)
        async with await Store.open(_state(config, state_path), create=False) as store:
            jobs = [_job_name(job, await store.jobs())] if job else await store.jobs()
            return [await progresses.job_status(store, name) for name in jobs]

    try:
        found = anyio.run(show)
    except MigratorError as exc:
        sys.exit(_fail(exc))
    if fmt == "json":
        click.echo(json.dumps({"jobs": found}, indent=2))
    else:
        for one in found:
            click.echo("\n".join(progresses.status_lines(one)))
    sys.exit(EXIT_OK)


@main.command()
@click.argument("job_file", type=click.Path(path_type=Path, dir_okay=False))
@config_option
@state_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="write to a file")
def plan(
    job_file: Path, config_path: Path | None, state_path: Path | None, fmt: str, output: Path | None
) -> None:
    """What a run of JOB_FILE would create, update, skip and refuse, with every translation warning.

    Reads the source and translates every workflow as a run would, compares with the state
    database (opened read-only), and sends nothing to the target. Exit 1 when a run would leave
    workflows invalid or blocked.
    """
    logsetup.configure(verbose=False, quiet=True)
    try:
        config = load_config(config_path)
        job = load_job(job_file, config)
    except MigratorError as exc:
        sys.exit(_fail(exc))
    state = _state(config, state_path)

    async def work() -> int:
        async with AsyncExitStack() as stack:
            store = None
            if await anyio.Path(state).exists():
                store = await stack.enter_async_context(await Store.open(state, read_only=True))
            source = await stack.enter_async_context(open_source(job.source, config, state))
            provider, _ = await stack.enter_async_context(
                open_provider(config.provider(job.target.provider), state)
            )
            planned = await stack.enter_async_context(planning(job, provider, store, source))
            with _text_out(output) as out:
                if fmt == "json":
                    plans.write_json(planned, out)
                elif fmt == "csv":
                    plans.write_csv(planned, out)
                else:
                    console = Console(file=out, width=None if output is None else 160)
                    for table in plans.tables(planned):
                        console.print(table)
                    console.print(f"per workflow: migrator plan {job_file} --format csv", markup=False)
            return EXIT_FAILED if planned.refused else EXIT_OK

    try:
        sys.exit(_run_async(work))
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted: a plan writes nothing, so there is nothing to resume")
        sys.exit(EXIT_INTERRUPTED)
    except MigratorError as exc:
        sys.exit(_fail(exc))


#: Failures a later attempt may not meet: the target's async job failed or never finished, or an
#: upstream failed. Others (the target refused the request) need ``--failed``, after a fix.
TRANSIENT_FAILURES = ("AsyncJobTimeout", "AsyncJobFailed", "UpstreamFailed")


@main.command()
@click.argument("job")
@click.option("--failed", "every", is_flag=True, help="every failed item, not only those a retry may cure")
@click.option("--parked", is_flag=True, help="also forget a used-up quota now (the account got more)")
@config_option
@state_option
def retry(job: str, every: bool, parked: bool, config_path: Path | None, state_path: Path | None) -> None:
    """Put failed items back to pending; the next `migrator run` submits them again.

    Without --failed: items whose async import failed or ran past its deadline, and those that
    failed behind a failed upstream. With --parked, parked items too, without waiting for the
    quota's reset.
    """

    async def requeue() -> int:
        config = load_config(config_path)
        state = _state(config, state_path)
        async with await Store.open(state, create=False) as store:
            name = _job_name(job, await store.jobs())
            with RunLock(state, name, "retry"):  # not while a run is changing the same items
                moved = await store.requeue(name, None if every else TRANSIENT_FAILURES)
                unparked = await store.unpark(name) if parked else 0
        which = "failed" if every else "retryable failed (" + ", ".join(TRANSIENT_FAILURES) + ")"
        also = f" and {unparked} parked" if parked else ""
        click.echo(f"{name}: {moved} {which}{also} items put back to pending; `migrator run` submits them")
        return EXIT_OK

    try:
        sys.exit(anyio.run(requeue))
    except MigratorError as exc:
        sys.exit(_fail(exc))


@contextmanager
def _text_out(output: Path | None) -> Iterator[TextIO]:
    """Where a command's text goes: standard output, or ``output`` written whole or not at all.

    Written beside it under a temporary name and moved into place at the end, so that a failure
    partway (a store that cannot be read, Ctrl-C) leaves an earlier report as it was rather than
    half of a new one.
    """
    if output is None:
        yield sys.stdout
        return
    part = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        with part.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        part.replace(output)
    finally:
        part.unlink(missing_ok=True)


@main.command()
@click.argument("job", required=False)
@click.option("--run", "run_id", type=int, help="an earlier run (default: the latest)")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "md", "html"]),
    default="table",
    show_default=True,
    help="csv: one row per item; html: a self-contained page with a throughput chart",
)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="write to a file")
@config_option
@state_option
def report(
    job: str | None,
    run_id: int | None,
    fmt: str,
    output: Path | None,
    config_path: Path | None,
    state_path: Path | None,
) -> None:
    """Report a job's items, failures, warnings and runs from the state database."""

    async def build() -> dict[str, Any] | None:
        """The report's data; CSV is written row by row as the store is read, and gives None."""
        config = load_config(config_path)
        async with await Store.open(_state(config, state_path), create=False) as store:
            name = _job_name(job, await store.jobs())
            if fmt != "csv":
                return await reports.build(store, name, run_id, every_warning=fmt == "json")
            await reports.chosen_run(store, name, run_id)
            with _text_out(output) as fh:
                await reports.write_csv(store.each_in_states(name, list(State)), store.each_warned(name), fh)
            return None

    try:
        data = anyio.run(build)
    except MigratorError as exc:
        sys.exit(_fail(exc))
    if data is None:
        sys.exit(EXIT_OK)
    texts: dict[str, Callable[[dict[str, Any]], str]] = {
        "json": lambda d: reports.to_json(d) + "\n",
        "md": reports.to_markdown,
        "html": reports.to_html,
    }
    with _text_out(output) as fh:
        if fmt == "table":
            reports.print_table(data, Console(file=fh, width=160))
        else:
            fh.write(texts[fmt](data))
    sys.exit(EXIT_OK)


@main.command()
@click.option("--port", type=int, help="serve on ports PORT, PORT+1, PORT+2 (emr, enos, dataworks)")
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    help="SQLite file the sandboxes keep their objects in (default: memory)",
)
@click.option(
    "--job-delay",
    default="0.5,2.0",
    show_default=True,
    help="async jobs finish after a random delay in this range of seconds",
)
@click.option(
    "--faults",
    "faults_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML or JSON file of faults to inject (quotas, throttle, server_error, latency, reset...)",
)
@click.option(
    "--fault",
    "fault_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="one fault setting, on top of --faults (repeatable): --fault qps=20 --fault latency.median=0.01",
)
def sandbox(
    port: int | None,
    data: Path | None,
    job_delay: str,
    faults_path: Path | None,
    fault_settings: tuple[str, ...],
) -> None:
    """Serve the provider sandboxes on loopback; prints one JSON line with endpoints and credentials."""
    from migrator.sandbox.base import SandboxSettings
    from migrator.sandbox.faults import FaultsError, load_faults
    from migrator.sandbox.server import serve

    logsetup.configure(quiet=True)
    try:
        low, high = (float(x) for x in job_delay.split(","))
    except ValueError:
        click.echo("migrator: --job-delay takes two numbers, like 0.5,2.0", err=True)
        sys.exit(EXIT_USAGE)
    try:
        faults = load_faults(faults_path, fault_settings)
    except FaultsError as exc:
        click.echo(f"migrator: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    settings = SandboxSettings(job_delay=(low, high), faults=faults)
    try:
        _run_async(lambda: serve(port, data, settings=settings))
    except KeyboardInterrupt:
        sys.exit(EXIT_OK)


@main.command()
@click.argument("provider")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="inventory file to write (JSON Lines, one canonical workflow per line)",
)
@click.option(
    "--raw",
    type=click.Path(path_type=Path, file_okay=False),
    help="instead, snapshot the provider's own documents in a directory (EMR: MigrationX's dump layout)",
)
@config_option
@state_option
def export(
    provider: str, output: Path | None, raw: Path | None, config_path: Path | None, state_path: Path | None
) -> None:
    """Write PROVIDER's live workflows as an inventory file (read page by page under its limits).

    The file holds secret variable values (a migration needs them), so it is created readable by
    its owner only. Workflows that cannot be read are reported and left out; exit code 1 then.
    """
    logsetup.configure(quiet=True)
    if (output is None) == (raw is None):
        click.echo("migrator: export takes exactly one of -o FILE and --raw DIR", err=True)
        sys.exit(EXIT_USAGE)
    if raw is not None:
        _snapshot(provider, raw, config_path, state_path)

    async def write() -> tuple[int, int]:
        config = load_config(config_path)
        cfg = config.provider(provider)
        async with open_source(
            SourceConfig(kind="live", provider=provider), config, _state(config, state_path)
        ) as (source):
            written = failed = 0
            assert output is not None
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as fh:  # noqa: ASYNC230 - buffered local writes, tiny next to the API calls
                async for entry in source():
                    if entry.workflow is None:
                        click.echo(f"migrator: {logsetup.scrub(entry.error or entry.origin)}", err=True)
                        failed += 1
                        continue
                    fh.write(json.dumps(entry.workflow.to_record(), ensure_ascii=False) + "\n")
                    written += 1
            log.debug("exported", provider=cfg.name, written=written, failed=failed)
            return written, failed

    try:
        written, failed = _run_async(write)
    except MigratorError as exc:
        sys.exit(_fail(exc))
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    click.echo(
        f"{provider}: {written} workflows written to {output}" + (f", {failed} unreadable" if failed else ""),
        err=True,
    )
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _snapshot(provider: str, directory: Path, config_path: Path | None, state_path: Path | None) -> None:
    """``export --raw``: the provider's own documents, as its export tools lay them out."""

    async def write() -> int:
        config = load_config(config_path)
        cfg = config.provider(provider)
        async with open_provider(cfg, _state(config, state_path)) as (live, _):
            snapshot = getattr(live, "snapshot", None)
            if snapshot is None:
                raise ConfigError(f"provider {provider!r} ({cfg.kind}) has no raw export")
            count: int = await snapshot(directory)
            return count

    try:
        count = _run_async(write)
    except MigratorError as exc:
        sys.exit(_fail(exc))
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    click.echo(f"{provider}: {count} flows written to {directory}", err=True)
    sys.exit(EXIT_OK)


@main.command()
def schema() -> None:
    """Print the JSON Schema of one inventory record."""
    click.echo(json.dumps(inventory_schema(), indent=2))


if __name__ == "__main__":
    main()
