"""Sources: sensor files (Zeek logs, Suricata EVE, platform JSON lines) read as raw lines.

`ReadSensorFiles` reads each file line by line (compressed files by their
extension, any filesystem Beam knows) and attaches to every data line its
position and the Zeek header directives in force, so Decode can read TSV lines
one at a time. Header and blank lines are not records; they are counted, not
emitted. A file that cannot be read becomes a dead letter of stage ``read``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from schemas.dead_letter import dead_letter_from_error
from schemas.errors import NotFoundError, UnexpectedError
from schemas.records import RawLine, SourcePosition
from transforms._stage import DEAD_LETTERS, MAIN, StageCounters
from transforms.decode import is_zeek_comment, zeek_directive

__all__ = ["PROGRESS", "ReadSensorFiles", "read_lines"]


class _Progress:
    """Records read so far in this process, for the CLI's progress line (DirectRunner)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records = 0
        self.files = 0

    def add(self, records: int = 0, files: int = 0) -> None:
        with self.lock:
            self.records += records
            self.files += files


PROGRESS = _Progress()
_PROGRESS_EVERY = 10_000


def read_lines(path: str, counters: StageCounters | None = None) -> Iterator[RawLine]:
    """Yield the data lines of one file as `RawLine`s.

    Zeek directive lines update the header context; a new block of directives
    later in the file (a header change) starts a new context. Blank lines and
    Zeek's other ``#`` lines (``#open``, ``#close``, ``##`` comments) are
    counted and skipped; any other line is a record.
    """
    directives: dict[bytes, bytes] = {}
    context: tuple[bytes, ...] | None = None
    offset = 0
    pending = 0
    with FileSystems.open(path) as handle:
        for number, raw in enumerate(iter(handle.readline, b""), start=1):
            start = offset
            offset += len(raw)
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.startswith(b"#"):
                directive = zeek_directive(line)
                if directive is not None:
                    directives[directive] = line
                    context = tuple(directives.values())
                if directive is not None or is_zeek_comment(line):
                    if counters is not None:
                        counters.extra["header_lines"] += 1
                    continue
            if not line.strip():
                if counters is not None:
                    counters.extra["blank_lines"] += 1
                continue
            yield RawLine(
                payload=line,
                source=SourcePosition(uri=path, line=number, offset=start),
                context=context,
            )
            pending += 1
            if pending == _PROGRESS_EVERY:
                PROGRESS.add(records=pending)
                pending = 0
    PROGRESS.add(records=pending, files=1)


class _ReadLinesFn(beam.DoFn):  # type: ignore[misc]
    def setup(self) -> None:
        self.counters = StageCounters("read")

    def process(self, path: str) -> Iterator[RawLine | TaggedOutput]:
        counters = self.counters
        counters.extra["files"] += 1
        emitted = 0
        try:
            for line in read_lines(path, counters):
                emitted += 1
                yield line
        except FileNotFoundError as error:
            yield self._failed(
                path, NotFoundError(f"input file vanished: {error}", stage="read"), emitted
            )
        except Exception as error:  # an unreadable file is a dead letter, not a crash
            failure = UnexpectedError(
                f"reading stopped after {emitted} records: {type(error).__name__}: {error}",
                stage="read",
            )
            failure.__cause__ = error
            yield self._failed(path, failure, emitted)
        finally:
            counters.inputs += emitted
            counters.outputs += emitted

    def _failed(self, path: str, error: Exception, emitted: int) -> TaggedOutput:
        # The unread rest of a file counts as one input record, dead-lettered.
        self.counters.inputs += 1
        origin = RawLine(payload=b"", source=SourcePosition(uri=path, line=None))
        letter = dead_letter_from_error("read", error, origin)
        self.counters.dead_letters[letter.error_class] += 1
        del emitted
        return TaggedOutput(DEAD_LETTERS, letter)

    def finish_bundle(self) -> None:
        self.counters.flush()


class ReadSensorFiles(beam.PTransform):  # type: ignore[misc]
    """Read sensor files into `RawLine`s; outputs ``main`` and ``dead_letters``.

    Args:
        paths: Files to read (already expanded from directories and globs).
    """

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__()
        self._paths = list(paths)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            pbegin
            | "InputFiles" >> beam.Create(self._paths)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadLines" >> beam.ParDo(_ReadLinesFn()).with_outputs(DEAD_LETTERS, main=MAIN)
        )
