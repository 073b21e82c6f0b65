"""How a quantizer's codes are shaped, and how a model over codes (a PixelCNN prior, the hierarchy's stage 2) reads
them: one place for the code shapes of the whole family.

Every quantizer but residual VQ gives one integer in [0, K) per latent position: (batch, *spatial). For FSQ and LFQ
that integer is the mixed-radix number of the per-channel levels (`quantization.finite_scalar`,
`quantization.lookup_free`), so a prior over K classes models it as it models a codebook index.

Residual VQ gives N integers in [0, K) per position, one per stage: (batch, N, *spatial). A prior models all N
stages as one grid, the stages interleaved along the last spatial axis and each code offset by stage x K:

    codes (batch, N, h, w)  ->  prior grid (batch, h, w * N),  token = stage * K + code,  vocabulary N * K

so in raster order a position's N stages come one after the other, coarse to fine, each predicted from every stage
before it and from the positions before, and a token says which stage it codes. A speech sequence (batch, N, L)
becomes one row of L * N tokens. A token of the wrong stage at a position (which a trained prior all but never
draws) is read as that code of the position's stage.
"""

import math
from dataclasses import dataclass

import torch


def _is_integer_tensor(tensor) -> bool:
    return isinstance(tensor, torch.Tensor) and not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


@dataclass(frozen=True)
class CodeLayout:
    """The codes of one quantizer: `num_embeddings` (K) values per index and, for residual VQ (`num_stages` set),
    a stage axis of `num_stages` (N) after the batch axis."""

    num_embeddings: int
    num_stages: int | None = None

    @property
    def stages(self) -> int:
        """Indices per latent position: N for residual VQ, else 1."""
        return self.num_stages or 1

    @property
    def bits_per_position(self) -> float:
        """log2(K) bits per stage, for every stage."""
        return self.stages * math.log2(self.num_embeddings)

    def code_axes(self, *spatial: str) -> tuple[str, ...]:
        """The names of the codes' axes after the batch axis: `spatial`, after "stages" for residual VQ."""
        return spatial if self.num_stages is None else ("stages", *spatial)

    def _shape_text(self, spatial) -> str:
        stage = [] if self.num_stages is None else [f"stages <= {self.num_stages}"]
        return "(" + ", ".join(["batch", *stage, *map(str, spatial)]) + ")"

    # ------------------------------------------------------------------------------------------- priors

    @property
    def prior_num_embeddings(self) -> int:
        """Classes of a model over the codes: N * K for residual VQ, else K."""
        return self.num_embeddings * self.stages

    def prior_grid(self, *spatial: int) -> tuple[int, ...]:
        """The grid a model over the codes sees for codes of `spatial` shape: the last axis N times longer."""
        return (*spatial[:-1], spatial[-1] * self.stages)

    def to_prior_grid(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (batch, [N,] *spatial) -> the prior's tokens (batch, *prior_grid(*spatial))."""
        if self.num_stages is None:
            return codes
        offsets = torch.arange(codes.shape[1], device=codes.device) * self.num_embeddings
        interleaved = codes.movedim(1, -1) + offsets
        return interleaved.reshape(*interleaved.shape[:-2], -1)

    def from_prior_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """The prior's tokens (batch, *prior grid) -> codes (batch, [N,] *spatial)."""
        if self.num_stages is None:
            return grid
        if grid.shape[-1] % self.num_stages:
            raise ValueError(
                f"a prior grid over {self.num_stages} residual stages must be a multiple of {self.num_stages} wide, got "
                f"shape {tuple(grid.shape)}"
            )
        stacked = grid.reshape(*grid.shape[:-1], grid.shape[-1] // self.num_stages, self.num_stages)
        return (stacked % self.num_embeddings).movedim(-1, 1).contiguous()

    # ------------------------------------------------------------------------------------------- checks

    def check_codes(self, name: str, codes, spatial_names: tuple[str, ...], spatial_shape: tuple[int, ...] | None = None) -> None:
        """Raise ValueError unless `codes` are integer codes of this layout: (batch, *spatial) or, for residual VQ,
        (batch, stages, *spatial) with 1 <= stages <= N (fewer stages: a lower bitrate), values in [0, K)."""
        expected = self._shape_text(spatial_names)
        if not _is_integer_tensor(codes):
            kind = codes.dtype if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"`{name}` must be an integer tensor of codes {expected}, got {kind}")
        stage_axes = 0 if self.num_stages is None else 1
        wrong_spatial = spatial_shape is not None and tuple(codes.shape[1 + stage_axes :]) != tuple(spatial_shape)
        if codes.ndim != 1 + stage_axes + len(spatial_names) or wrong_spatial:
            wanted = expected if spatial_shape is None else f"{expected} = {self._shape_text(spatial_shape)}"
            raise ValueError(f"`{name}` must have shape {wanted}, got {tuple(codes.shape)}")
        if stage_axes and not 1 <= codes.shape[1] <= self.num_stages:
            raise ValueError(
                f"`{name}` holds {codes.shape[1]} residual stages; pass between 1 and {self.num_stages} (num_quantizers): "
                "the first stages of the codes, fewer for a lower bitrate"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.num_embeddings):
            raise ValueError(
                f"`{name}` must hold codes in [0, {self.num_embeddings}) (num_embeddings), got values in "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
