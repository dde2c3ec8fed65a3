"""Audio post-processing for editors. Synchronous and CPU-bound: call it through
`loop.run_in_executor` from async code (see service.py)."""

from server.audio.service import (
    OUTPUT_SAMPLE_RATE,
    CorruptAudio,
    ProcessedAudio,
    probe_wav,
    process_for_editing,
)

__all__ = ["OUTPUT_SAMPLE_RATE", "CorruptAudio", "ProcessedAudio", "probe_wav", "process_for_editing"]
