"""Where an export goes: a local path or any pyarrow filesystem URI (``s3://``, ``gs://``, ``file://``…).

Files are written under a temporary name (a leading ``.`` and the suffix ``.inprogress``; dataset readers
skip names starting with ``.``) and renamed when the whole export is complete, right before the manifest.
"""

from __future__ import annotations

import os
import posixpath
from typing import Final

import pyarrow as pa
import pyarrow.fs as pafs

__all__ = ["TEMP_SUFFIX", "Output", "OutputError", "temp_path"]

TEMP_SUFFIX: Final = ".inprogress"


class OutputError(Exception):
    """The output location cannot be used; the message says what and what to do."""


def temp_path(final: str) -> str:
    """The temporary name of ``final``: ``dir/.name.inprogress``."""
    head, name = posixpath.split(final)
    return posixpath.join(head, f".{name}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


class Output:
    """A directory (or, for a ZIP, a file) on a pyarrow filesystem."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        if "://" in uri:
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(uri)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                raise OutputError(
                    f"Cannot use the output {uri!r}: {exc}. Give a local path or a URI pyarrow supports "
                    "(file://, s3://, gs://, hdfs://)."
                ) from None
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri).replace(os.sep, "/")
        self.root = self.root.rstrip("/") or "/"

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def info(self, path: str) -> pafs.FileInfo:
        return self.fs.get_file_info(path)

    def prepare_directory(self) -> None:
        """Create the export directory; refuse one that holds anything but leftovers of a killed export
        (which are removed)."""
        info = self.info(self.root)
        if info.type == pafs.FileType.File:
            raise OutputError(f"{self.uri} is a file; give a directory for this format.")
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(self.root, recursive=True)
            leftovers: list[str] = []
            for entry in self.fs.get_file_info(selector):
                if entry.type != pafs.FileType.File:
                    continue
                if not is_temp_name(entry.base_name):
                    raise OutputError(
                        f"{self.uri} is not empty (it holds {entry.path[len(self.root) + 1 :]}). "
                        "Export into a new directory, or remove the old export first."
                    )
                leftovers.append(entry.path)
            for path in leftovers:
                self.fs.delete_file(path)
        self.fs.create_dir(self.root, recursive=True)

    def open_output(self, path: str) -> pa.NativeFile:
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        return self.fs.open_output_stream(path)

    def open_input(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def move(self, src: str, dst: str) -> None:
        self.fs.move(src, dst)

    def delete(self, path: str) -> None:
        if self.info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)
