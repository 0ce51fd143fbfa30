"""Content store: blobs by digest, written through verified, resumable ingests."""

from dockyard.content.store import ContentStore, Info, IngestStatus, Writer, parse_digest

__all__ = ["ContentStore", "Info", "IngestStatus", "Writer", "parse_digest"]
