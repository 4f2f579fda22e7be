"""Trainer configuration: the model profile (network size) and the training settings.

Every default is the paper's (sections 6.2 and 7.3), so that a run without a config
file reproduces the published setup; a YAML file and `key=value` overrides from the
command line change only what they name. Unknown keys are refused by name, because a
typo that silently keeps a default would cost a whole training run.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A training or profile setting is missing, unknown or out of range."""


@dataclass(frozen=True)
class ModelProfile:
    """Widths and patch size of the generator and discriminator.

    The encoder has one stage per entry of `stage_widths`; each stage is blocks A, B,
    C and halves H and W once, so it ends at patch_size / 2**len(stage_widths).
    Inside a block the first two 3x3 convolutions run at out_width // bottleneck_ratio
    channels (ResNet v2's bottleneck), the last one at the block's output width.
    """

    name: str
    patch_size: int
    stage_widths: tuple[int, ...]
    stem_width: int
    bottleneck_ratio: int
    latent_dim: int
    disc_widths: tuple[int, ...]
    # Block size of the stem's space-to-depth (and of the decoder's closing
    # depth-to-space): with 4, the encoder sees the native 256 px region as a
    # 64x64x16 tensor (every pixel kept, none resampled) and its residual stages cost
    # what a 64 px model costs; the decoder's last convolution predicts each 4x4 block.
    space_to_depth: int = 1

    def __post_init__(self) -> None:
        stages = len(self.stage_widths)
        if stages < 1 or any(w < 1 for w in self.stage_widths):
            raise ConfigError(f"profile '{self.name}': stage_widths must be positive, got {self.stage_widths}")
        if self.space_to_depth < 1:
            raise ConfigError(f"profile '{self.name}': space_to_depth must be >= 1, got {self.space_to_depth}")
        reduction = self.space_to_depth * 2**stages
        if self.patch_size % reduction or self.patch_size // reduction < 1:
            raise ConfigError(
                f"profile '{self.name}': patch_size {self.patch_size} must be divisible by "
                f"{reduction} (space_to_depth {self.space_to_depth} x one halving per encoder stage)"
            )
        if self.patch_size < 11:
            raise ConfigError(f"profile '{self.name}': patch_size must be >= 11 (the SSIM window)")
        if self.latent_dim < 1 or self.bottleneck_ratio < 1 or self.stem_width < 1:
            raise ConfigError(f"profile '{self.name}': latent_dim, bottleneck_ratio and stem_width must be >= 1")
        if not self.disc_widths or self.patch_size % (2 ** len(self.disc_widths)):
            raise ConfigError(
                f"profile '{self.name}': patch_size must be divisible by 2**len(disc_widths) "
                f"(one stride-2 conv per discriminator width)"
            )

    @property
    def encoder_output_size(self) -> int:
        """H (= W) of the encoder's last feature map."""
        return self.patch_size // (self.space_to_depth * 2 ** len(self.stage_widths))


PROFILES: dict[str, ModelProfile] = {
    # Section 7.2: 4 stages, 256x256x1 in, 16x16x1024 at the end of the encoder, dense 64.
    # The paper gives only the last width; the others double per stage as in ResNet.
    "paper": ModelProfile(
        name="paper",
        patch_size=256,
        stage_widths=(128, 256, 512, 1024),
        stem_width=32,
        bottleneck_ratio=4,
        latent_dim=64,
        disc_widths=(32, 64, 128, 256, 512),
    ),
    # Same architecture, narrow, at the recipe's native 256 px: a 4x4 space-to-depth
    # stem hands the residual stages a 64x64x16 tensor (no pixel resampled away, so a
    # 1-6 px particle stays 1-6 px) and the decoder closes with the inverse, so 60
    # patches (one strip) still fit well inside the 500 ms slot of a 2-core CPU.
    "cpu": ModelProfile(
        name="cpu",
        patch_size=256,
        stage_widths=(8, 16, 32, 64),
        stem_width=16,
        bottleneck_ratio=2,
        latent_dim=64,
        disc_widths=(8, 16, 32, 64, 64),
        space_to_depth=4,
    ),
    # For tests only: seconds on CPU.
    # Two stages instead of four keep the graph, hence tracing time, small.
    "tiny": ModelProfile(
        name="tiny",
        patch_size=32,
        stage_widths=(4, 8),
        stem_width=4,
        bottleneck_ratio=1,
        latent_dim=64,
        disc_widths=(4, 8),
    ),
}


def get_profile(name: str) -> ModelProfile:
    """The named profile, or a ConfigError listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown model profile '{name}'; known profiles: {sorted(PROFILES)}") from None


# Paper 7.3: "restart every 2533680 steps" = the number of training patches (90 % of
# 2,815,200), i.e. one epoch counted in samples. We keep it in samples and divide by the
# batch size, so the restart stays at one epoch whatever the batch.
PAPER_RESTART_SAMPLES = 2_533_680


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; defaults are the paper's."""

    # Loss weights, eq. 5-8.
    w_a: float = 2.0   # Huber term of the contextual loss
    w_b: float = 1.0   # 1 - SSIM term of the contextual loss
    w1: float = 1.0    # adversarial (feature matching)
    w2: float = 50.0   # contextual
    w3: float = 1.0    # encoder L1(z, z_hat)
    w4: float = 3.0    # noise loss
    huber_delta: float = 1.0
    # Perlin perturbation (section 6.1, 7.3).
    perturb_probability: float = 0.75
    perlin_resolutions: tuple[int, ...] = (2, 4, 8)
    perlin_threshold: float = 0.5
    noise_opacity: tuple[float, float] = (0.5, 1.0)
    # Augmentation (section 6.2): rotation bound in radians and vertical flip only.
    max_rotation: float = math.pi / 8
    vertical_flip: bool = True
    # Optimisation (section 7.3).
    learning_rate: float = 1.5e-4
    restart_samples: int = PAPER_RESTART_SAMPLES
    restart_t_mul: float = 1.0
    restart_m_mul: float = 1.0 / 3.0
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    batch_size: int = 32
    epochs: int = 10
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    seed: int = 0
    # "auto": mixed_float16 when a GPU is present, float32 otherwise.
    precision: str = "auto"
    checkpoint_dirname: str = "checkpoints"
    tensorboard_dirname: str = "tensorboard"
    checkpoints_to_keep: int = 3
    # Also save every N optimizer steps (None: at epoch ends only). A paper epoch is
    # ~79k steps; an interruption then loses at most N steps (the epoch restarts).
    checkpoint_every_steps: int | None = None
    sample_images: int = 4
    verbose: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.perturb_probability <= 1.0:
            raise ConfigError(f"perturb_probability must be in [0, 1], got {self.perturb_probability}")
        if not 0.0 <= self.max_rotation <= math.pi / 2:
            raise ConfigError(
                f"max_rotation must be in [0, pi/2] rad, got {self.max_rotation}: "
                "larger rotations look like a defect to the inspection"
            )
        if self.batch_size < 1 or self.epochs < 1 or self.restart_samples < 1:
            raise ConfigError("batch_size, epochs and restart_samples must be >= 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.precision not in ("auto", "float32", "mixed_float16"):
            raise ConfigError(f"precision must be auto, float32 or mixed_float16, got '{self.precision}'")
        if not self.perlin_resolutions or any(r < 1 for r in self.perlin_resolutions):
            raise ConfigError(f"perlin_resolutions must be positive, got {self.perlin_resolutions}")
        lo, hi = self.noise_opacity
        if not 0.0 <= lo <= hi <= 1.0:
            raise ConfigError(f"noise_opacity must be 0 <= low <= high <= 1, got {self.noise_opacity}")

    @property
    def restart_steps(self) -> int:
        """First cosine period in optimizer steps."""
        return max(1, math.ceil(self.restart_samples / self.batch_size))


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn a YAML or CLI value into the type of the field's default."""
    if isinstance(value, str) and not isinstance(default, str):
        value = yaml.safe_load(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if default is not None and value is not None and not isinstance(value, type(default)):
        raise ConfigError(f"setting '{name}' expects {type(default).__name__}, got {value!r}")
    return value


def make_train_config(values: dict[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from a dict of settings, refusing unknown names."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    values = dict(values or {})
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown training settings {unknown}; known: {sorted(defaults)}")
    return TrainConfig(**{k: _coerce(k, v, defaults[k]) for k, v in values.items()})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["lr=1e-4", "epochs=2"]` -> dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like name=value")
        out[key.strip()] = raw
    return out


def load_train_config(path: Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Paper defaults, then the YAML file (if any), then `name=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"training config file not found: {path}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"training config {path} must be a mapping of name: value")
        values.update(loaded)
    values.update(parse_overrides(overrides or []))
    return make_train_config(values)
