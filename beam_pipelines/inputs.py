"""Input resolution: files, directories and globs into the list of files a run reads.

Resolved before the pipeline is built, so a missing path fails the command at
start with one clear line instead of deep inside a worker.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from schemas.errors import NotFoundError, ValidationError

__all__ = ["resolve_inputs"]

_GLOB_CHARS = set("*?[")


def _directory_files(directory: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return found


def resolve_inputs(inputs: Iterable[str]) -> tuple[str, ...]:
    """Expand ``inputs`` into a sorted, de-duplicated tuple of files.

    Directories are read recursively (hidden files and directories skipped);
    globs may use ``**``; URIs with a scheme Beam knows (``s3://``, ``gs://``)
    are matched through Beam's filesystems.

    Raises:
        NotFoundError: A path does not exist or a glob matches nothing.
        ValidationError: A streaming URI was given to a batch run.
    """
    files: list[str] = []
    for item in inputs:
        if item.startswith("kinesis://"):
            raise ValidationError(
                f"{item}: a stream is read by the streaming job (`otsec flink submit --input "
                f"{item}`); `otsec run` reads files, directories and globs",
                field="--input",
            )
        if "://" in item and not item.startswith("file://"):
            from apache_beam.io.filesystems import FileSystems

            try:
                matches = FileSystems.match([item])[0].metadata_list
            except Exception as error:  # Beam wraps every filesystem failure differently
                raise NotFoundError(f"cannot list {item}: {error}", field="--input") from None
            if not matches:
                raise NotFoundError(f"input matches nothing: {item}", field="--input")
            files.extend(m.path for m in matches)
            continue
        path = item.removeprefix("file://")
        if _GLOB_CHARS & set(path):
            matched = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not matched:
                raise NotFoundError(f"input glob matches no file: {item}", field="--input")
            files.extend(matched)
        elif os.path.isdir(path):
            files.extend(_directory_files(path))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise NotFoundError(f"input not found: {item}", field="--input")
    return tuple(dict.fromkeys(os.path.abspath(f) if "://" not in f else f for f in files))
