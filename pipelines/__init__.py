"""vidfix.pipelines: chunked long-video sampler, diffusers wrappers, multi-process runs, the reference model."""

__all__: list[str] = []
