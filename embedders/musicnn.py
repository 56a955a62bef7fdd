"""The MusiCNN backbones (`musicnn_mtt`, `musicnn_msd`): a PyTorch port of Pons & Serra's MusiCNN tagger
loading the TensorFlow checkpoints shipped in the `musicnn==0.1.0` wheel (read with `embedders.tf_checkpoint`;
the musicnn package code itself needs TensorFlow and is never imported).

Architecture (input: log-mel patches (batch, T, 96), T = 187 frames = 3 s at 16 kHz / hop 256):
  * front-end: batch norm of the input; two timbral convs (7 x 38 and 7 x 67 mel bins, 204 filters each,
    input zero-padded by 3 frames on each side, 'valid') and three temporal convs (128, 64, 32 frames x 1 bin,
    51 filters each, TF 'same' padding); each conv -> ReLU -> batch norm -> max over frequency; concatenated
    to 561 channels per frame.
  * mid-end: three 7-frame convs with 64 filters (ReLU -> batch norm), the 2nd and 3rd with residuals; the
    front-end and the three mid-end outputs are concatenated to 753 channels per frame.
  * back-end: max and mean over time (interleaved per channel, 1506 values), batch norm, dense 200 + ReLU,
    batch norm (the 200-d "penultimate" embedding), dense 50 -> sigmoid (the tag probabilities).
Batch norms run in inference mode with TF's epsilon 1e-3, folded into a per-channel scale and shift.

Track embedding: the log-mel of the whole track is cut into 187-frame patches every `hop_seconds` (3 s by
default, musicnn's own setting; 1.5 s is Essentia's), the tail after the last full patch is dropped as in
musicnn, tracks shorter than one patch are repeat-padded (musicnn's training setting `pad_short:
repeat-pad`), and the 200-d penultimate outputs are averaged over patches.
"""
from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from embedders.base import Backbone, register_backbone
from embedders.mel import HOP_LENGTH, N_FFT, N_MELS, SAMPLE_RATE, LogMel
from embedders.tf_checkpoint import TFCheckpoint

TF_BATCH_NORM_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization default
PATCH_FRAMES = 187  # musicnn: librosa.time_to_frames(3 s) + 1
PATCH_SECONDS = 3.0
CPU_PATCHES_PER_BATCH = 32  # about 600 MB of float32 activations at peak (measured)
CUDA_BYTES_PER_PATCH = 64 * 2**20  # generous float16 estimate, including cuDNN workspace

MTT_TAGS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
    "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
    "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
    "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
]
MSD_TAGS = [
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
]
TAGS = {"MTT": MTT_TAGS, "MSD": MSD_TAGS}


class FrozenBatchNorm(torch.nn.Module):
    """Inference-mode batch norm as y = x * scale + shift over the channel axis `axis` (buffers of shape (C,))."""

    def __init__(self, channels: int, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))

    def load_tf(self, checkpoint: TFCheckpoint, scope: str) -> None:
        """Fold `scope`/{gamma, beta, moving_mean, moving_variance} into scale and shift."""
        gamma, beta = checkpoint.read(f"{scope}/gamma"), checkpoint.read(f"{scope}/beta")
        mean, variance = checkpoint.read(f"{scope}/moving_mean"), checkpoint.read(f"{scope}/moving_variance")
        scale = gamma / np.sqrt(variance + np.float32(TF_BATCH_NORM_EPSILON))
        self.scale.copy_(torch.from_numpy(scale))
        self.shift.copy_(torch.from_numpy(beta - mean * scale))

    def broadcast(self, tensor: torch.Tensor, ndim: int) -> torch.Tensor:
        shape = [1] * ndim
        shape[self.axis] = -1
        return tensor.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.broadcast(self.scale, x.ndim) + self.broadcast(self.shift, x.ndim)


def _load_conv(conv: torch.nn.Module, checkpoint: TFCheckpoint, scope: str) -> None:
    """Copy a TF conv2d kernel (kh, kw, in, out) + bias into a torch Conv2d (out, in, kh, kw) or, when the TF
    kernel spans the whole input width with one input channel, a Conv1d (out, kw, kh)."""
    kernel = torch.from_numpy(checkpoint.read(f"{scope}/kernel"))
    if isinstance(conv, torch.nn.Conv1d):
        weight = kernel[:, :, 0, :].permute(2, 1, 0)
    else:
        weight = kernel.permute(3, 2, 0, 1)
    if weight.shape != conv.weight.shape:
        raise ValueError(f"{checkpoint.index_path}: {scope}/kernel gives {tuple(weight.shape)}, model expects "
                         f"{tuple(conv.weight.shape)}")
    conv.weight.copy_(weight)
    conv.bias.copy_(torch.from_numpy(checkpoint.read(f"{scope}/bias")))


PRODUCT_MAX_FRAMES = 64  # float32 CPU: longest time kernel run as windows x kernels (FrequencyPooledConv)
DEVICE_PRECISIONS = {"cpu": ("float32", "bfloat16"), "cuda": ("float16", "float32")}  # torch dtype names


class FrequencyPooledConv(torch.nn.Module):
    """Conv2d over (time, mel) -> ReLU -> batch norm -> max over mel bins: (B, 1, T, 96) -> (B, filters, T).

    The TF time padding (before, after) is done by the conv as (after, after) zeros, dropping the
    `after - before` first output frames. Pooling happens on the raw conv output, so that the batch norm
    touches only the pooled (B, filters, T) values: max over mel commutes with ReLU, and for a channel whose
    batch-norm scale is negative the max of the normalised values is the scaled *min*, which is computed as
    minus the max of the sign-flipped conv (weights flipped once at load time, `sign` = -1)."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_padding: tuple[int, int]) -> None:
        super().__init__()
        before, after = time_padding
        self.skip_frames = after - before
        self.conv = torch.nn.Conv2d(1, filters, kernel, padding=(after, 0))
        self.norm = FrozenBatchNorm(filters, axis=1)
        self.register_buffer("sign", torch.ones(filters))

    def load_tf(self, checkpoint: TFCheckpoint, conv_scope: str, norm_scope: str) -> None:
        _load_conv(self.conv, checkpoint, conv_scope)
        self.norm.load_tf(checkpoint, norm_scope)
        self.sign.copy_(torch.where(self.norm.scale < 0, -1.0, 1.0))
        self.conv.weight.mul_(self.sign.view(-1, 1, 1, 1))
        self.conv.bias.mul_(self.sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        length, width = self.conv.kernel_size
        as_product = x.device.type == "cpu" and (x.dtype == torch.bfloat16
                                                 or (width == 1 and length <= PRODUCT_MAX_FRAMES))
        if as_product:
            raw_max = self._windows_max(x)
        else:
            activation = self.conv(x)[:, :, self.skip_frames : self.skip_frames + frames]  # (B, filters, T, bins)
            raw_max = activation.amax(dim=3)
        return self.norm(torch.relu(raw_max * self.sign.view(1, -1, 1)))

    def _windows_max(self, x: torch.Tensor) -> torch.Tensor:
        """The conv's output maxed over mel bins, (B, 1, T, bins) -> (B, filters, T): per patch one product of
        its (time x mel) windows (T * positions, length * width) with the kernels (length * width, filters). Same
        sums as the convolution. Faster on the CPU than oneDNN's one-channel convolution in float32 for the short
        time kernels (up to `PRODUCT_MAX_FRAMES`), and in bfloat16 for every kernel (benchmarks/anchor_musicnn.py)."""
        length, width = self.conv.kernel_size
        filters, frames, after = self.conv.out_channels, x.shape[2], self.conv.padding[0]
        padded = torch.nn.functional.pad(x[:, 0], (0, 0, after, after))  # (B, T + 2 after, bins)
        kernels = self.conv.weight.view(filters, length * width).t()  # (length * width, filters)
        pooled = []
        for patch in padded[:, self.skip_frames : self.skip_frames + frames + length - 1]:
            windows = patch.unfold(0, length, 1).unfold(1, width, 1).reshape(-1, length * width)
            pooled.append(torch.addmm(self.conv.bias, windows, kernels).view(frames, -1, filters).amax(dim=1))
        return torch.stack(pooled).transpose(1, 2)


class TimeConv(torch.nn.Module):
    """Conv1d over time with 7 frames (zero-padded 3 + 3) -> ReLU -> batch norm: (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, in_channels: int, filters: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(in_channels, filters, 7, padding=3)
        self.norm = FrozenBatchNorm(filters, axis=1)

    def load_tf(self, checkpoint: TFCheckpoint, conv_scope: str, norm_scope: str) -> None:
        _load_conv(self.conv, checkpoint, conv_scope)
        self.norm.load_tf(checkpoint, norm_scope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.conv(x)))


def _same_padding(kernel: int) -> tuple[int, int]:
    """TF 'same' padding for stride 1: the extra frame of an even kernel goes after."""
    return (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2


@dataclass(frozen=True)
class MusiCNNOutputs:
    """Per-patch outputs, all float32 tensors: taggram (B, 50) sigmoid probabilities, mean_pool and max_pool
    (B, 753) temporal pools of the mid-end features, penultimate (B, 200) the embedding layer."""

    taggram: torch.Tensor
    mean_pool: torch.Tensor
    max_pool: torch.Tensor
    penultimate: torch.Tensor


class MusiCNN(torch.nn.Module):
    """MusiCNN (the 'musicnn' models of the musicnn package): log-mel (B, T, 96) -> MusiCNNOutputs."""

    TIMBRAL_FILTERS = 204  # int(1.6 * 128)
    TEMPORAL_FILTERS = 51  # int(1.6 * 32)
    FRONTEND_CHANNELS = 2 * TIMBRAL_FILTERS + 3 * TEMPORAL_FILTERS  # 561

    def __init__(self, n_tags: int = 50, midend_filters: int = 64, backend_units: int = 200) -> None:
        super().__init__()
        self.input_norm = FrozenBatchNorm(1, axis=1)
        self.timbral = torch.nn.ModuleList(
            FrequencyPooledConv(self.TIMBRAL_FILTERS, (7, int(fraction * N_MELS)), (3, 3)) for fraction in (0.4, 0.7)
        )
        self.temporal = torch.nn.ModuleList(
            FrequencyPooledConv(self.TEMPORAL_FILTERS, (length, 1), _same_padding(length)) for length in (128, 64, 32)
        )
        self.midend = torch.nn.ModuleList(
            [TimeConv(self.FRONTEND_CHANNELS, midend_filters)]
            + [TimeConv(midend_filters, midend_filters) for _ in range(2)]
        )
        pooled = 2 * (self.FRONTEND_CHANNELS + 3 * midend_filters)  # max and mean of 753 channels
        self.pool_norm = FrozenBatchNorm(pooled, axis=1)
        self.dense = torch.nn.Linear(pooled, backend_units)
        self.dense_norm = FrozenBatchNorm(backend_units, axis=1)
        self.output = torch.nn.Linear(backend_units, n_tags)

    def forward(self, logmel: torch.Tensor) -> MusiCNNOutputs:
        x = self.input_norm(logmel.unsqueeze(1))  # (B, 1, T, 96)
        frontend = torch.cat([block(x) for block in (*self.timbral, *self.temporal)], dim=1)  # (B, 561, T)
        first = self.midend[0](frontend)
        second = self.midend[1](first) + first
        third = self.midend[2](second) + second
        features = torch.cat([frontend, first, second, third], dim=1)  # (B, 753, T)
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # TF order: (max_c, mean_c) per channel
        penultimate = self.dense_norm(torch.relu(self.dense(self.pool_norm(pooled))))
        taggram = torch.sigmoid(self.output(penultimate))
        return MusiCNNOutputs(taggram.float(), mean_pool.float(), max_pool.float(), penultimate.float())

    @torch.no_grad()
    def load_tf_checkpoint(self, checkpoint: TFCheckpoint) -> "MusiCNN":
        """Copy every weight from a musicnn TF checkpoint. TF numbers its layers in creation order:
        batch_normalization (input), then conv2d_i with batch_normalization_{i+1} for the 5 front-end and 3
        mid-end blocks, batch_normalization_9 (pooled), dense, batch_normalization_10, dense_1."""
        self.input_norm.load_tf(checkpoint, "batch_normalization")
        for number, block in enumerate((*self.timbral, *self.temporal, *self.midend)):
            block.load_tf(checkpoint, _numbered("conv2d", number), _numbered("batch_normalization", number + 1))
        self.pool_norm.load_tf(checkpoint, "batch_normalization_9")
        self.dense_norm.load_tf(checkpoint, "batch_normalization_10")
        for number, linear in enumerate((self.dense, self.output)):
            scope = _numbered("dense", number)
            linear.weight.copy_(torch.from_numpy(checkpoint.read(f"{scope}/kernel")).T)
            linear.bias.copy_(torch.from_numpy(checkpoint.read(f"{scope}/bias")))
        return self


def _numbered(base: str, number: int) -> str:
    """TF's automatic layer names: base, base_1, base_2, ..."""
    return f"{base}_{number}" if number else base


def shipped_checkpoint_dir(dataset: str) -> Path:
    """Folder of the `<dataset>_musicnn` checkpoint inside the installed musicnn wheel (not imported)."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("musicnn weights: the musicnn package is not installed "
                                "(pip install --no-deps musicnn==0.1.0), or pass weights_dir=")
    return Path(list(spec.submodule_search_locations)[0]) / f"{dataset}_musicnn"


def load_pretrained(dataset: str, weights_dir: str | Path | None = None) -> tuple[MusiCNN, Path]:
    """MusiCNN with the weights of `dataset` ('MTT' or 'MSD'); returns the model (eval mode) and the data file."""
    if dataset not in TAGS:
        raise ValueError(f"musicnn: dataset must be one of {sorted(TAGS)}, got {dataset!r}")
    folder = Path(weights_dir) if weights_dir is not None else shipped_checkpoint_dir(dataset)
    checkpoint = TFCheckpoint(str(folder) + "/")  # musicnn saves with an empty file stem: '<folder>/.index'
    model = MusiCNN(n_tags=len(TAGS[dataset])).load_tf_checkpoint(checkpoint)
    return model.eval(), checkpoint.data_paths[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cut_patches(logmel: torch.Tensor, hop_frames: int) -> torch.Tensor:
    """(frames, 96) -> (n_patches, 187, 96): patches start every `hop_frames` frames while a full patch fits;
    a track shorter than one patch is repeated (tiled) up to 187 frames."""
    frames = logmel.shape[0]
    if frames < PATCH_FRAMES:
        repeats = -(-PATCH_FRAMES // frames)
        return logmel.repeat(repeats, 1)[:PATCH_FRAMES].unsqueeze(0)
    return logmel.unfold(0, PATCH_FRAMES, hop_frames).transpose(1, 2)


class MusiCNNEmbedder(Backbone):
    """The `Embedder` for one MusiCNN checkpoint (`dataset`, set by the registered subclasses); see the
    module docstring for the patch and pooling policy."""

    dataset: ClassVar[str]
    sample_rate = SAMPLE_RATE
    dim = 200
    version = "1"
    needs_gpu = True
    weight_options = ("weights_dir",)

    @dataclass(frozen=True)
    class Options:
        """hop_seconds: patch hop (3.0 = musicnn's default of adjacent patches, 1.5 = Essentia's 93 frames);
        device: 'cpu' / 'cuda' (default: cuda when available);
        precision: the model's number type: 'float32' (the CPU's default), 'float16' (CUDA's default) or
        'bfloat16' (CPU: faster where the CPU has AVX512-BF16 or AMX, tags within about 0.01 of the original's;
        README, anchors table); log-mel features and outputs stay float32;
        patches_per_batch: patches per forward pass (default: 32 on CPU, sized to free memory on CUDA);
        weights_dir: a folder with the TF checkpoint (default: the one the musicnn wheel ships)."""

        hop_seconds: float = PATCH_SECONDS
        device: str | None = None
        precision: str | None = None
        patches_per_batch: int | None = None
        weights_dir: str | None = None

        def __post_init__(self) -> None:
            known = sorted({name for names in DEVICE_PRECISIONS.values() for name in names})
            if self.precision is not None and self.precision not in known:
                raise ValueError(f"precision {self.precision!r}: expected one of {known}")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        hop_seconds, device = self.options.hop_seconds, self.options.device
        patches_per_batch, weights_dir, dataset = self.options.patches_per_batch, self.options.weights_dir, self.dataset
        self.hop_frames = int(hop_seconds * PATCH_FRAMES / PATCH_SECONDS)
        if self.hop_frames < 1:
            raise ValueError(f"{self.name}: hop_seconds={hop_seconds} is shorter than one frame")
        self.hop_seconds = hop_seconds
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        precision = self.options.precision or ("float16" if self.device.type == "cuda" else "float32")
        allowed = DEVICE_PRECISIONS.get(self.device.type, ("float32",))
        if precision not in allowed:
            raise ValueError(f"{self.name}: precision {precision!r} on {self.device.type}: expected one of {allowed}")
        self.dtype = getattr(torch, precision)
        model, self.weights_path = load_pretrained(dataset, weights_dir)
        self.model = model.to(self.device, self.dtype)
        self.features = LogMel().to(self.device)
        self.patches_per_batch = patches_per_batch or self._default_patches_per_batch()

    def _default_patches_per_batch(self) -> int:
        if self.device.type != "cuda":
            return CPU_PATCHES_PER_BATCH
        free_bytes, _ = torch.cuda.mem_get_info(self.device)
        return int(max(1, min(1024, free_bytes // 2 // CUDA_BYTES_PER_PATCH)))

    def log_mel(self, waveform: np.ndarray) -> torch.Tensor:
        """(samples,) float32 at 16 kHz -> (frames, 96) float32 on the model's device. Waveforms shorter than one
        FFT frame are zero-padded to 512 samples; empty or non-1-D input raises ValueError."""
        wave = np.asarray(waveform, dtype=np.float32)
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"{self.name}: expected a non-empty mono waveform, got shape {wave.shape}")
        if wave.size < N_FFT:
            wave = np.pad(wave, (0, N_FFT - wave.size))
        return self.features(torch.from_numpy(wave).to(self.device).unsqueeze(0))[0]

    @torch.inference_mode()
    def patch_outputs(self, waveforms: Sequence[np.ndarray]) -> tuple[list[int], MusiCNNOutputs]:
        """Run every patch of every track: (patches per track, outputs over all patches in track order)."""
        patches = [cut_patches(self.log_mel(wave), self.hop_frames) for wave in waveforms]
        counts = [p.shape[0] for p in patches]
        stacked = torch.cat(patches).to(self.dtype)
        parts = [self.model(stacked[start : start + self.patches_per_batch])
                 for start in range(0, stacked.shape[0], self.patches_per_batch)]
        merged = MusiCNNOutputs(*(torch.cat([getattr(p, field) for p in parts]).cpu()
                                  for field in ("taggram", "mean_pool", "max_pool", "penultimate")))
        return counts, merged

    def embed_and_tags(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 200 + 50) float32 from one forward: per track the mean over its patches of the penultimate layer,
        then of the tag probabilities."""
        width = self.dim + len(self.tag_names)
        if len(waveforms) == 0:
            return np.zeros((0, width), np.float32)
        counts, outputs = self.patch_outputs(waveforms)
        both = torch.cat([outputs.penultimate, outputs.taggram], dim=1)
        return torch.stack([chunk.mean(dim=0) for chunk in both.split(counts)]).numpy().astype(np.float32)

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 200) float32: mean over each track's patches of the penultimate layer."""
        return np.ascontiguousarray(self.embed_and_tags(waveforms)[:, : self.dim])

    def tags(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 50) float32: mean over each track's patches of the tag probabilities (names: `tag_names`)."""
        return np.ascontiguousarray(self.embed_and_tags(waveforms)[:, self.dim:])

    def provenance(self) -> dict[str, str]:
        return {
            "weights": f"musicnn==0.1.0 {self.dataset}_musicnn (TF checkpoint, ported to PyTorch)",
            "weights_sha256": _sha256(self.weights_path),
            "sample_rate": str(SAMPLE_RATE),
            "features": f"log10(10000*mel+1), {N_MELS} mel, n_fft {N_FFT}, hop {HOP_LENGTH}, float32",
            "clip_policy": f"patches of {PATCH_FRAMES} frames ({PATCH_SECONDS} s) every {self.hop_frames} frames "
                           f"({self.hop_seconds} s), tail dropped, short tracks repeat-padded",
            "pooling": "mean over patches of the 200-d penultimate layer",
        }


@register_backbone
class MusiCNNMTT(MusiCNNEmbedder):
    """MusiCNN trained on MagnaTagATune (50 MTT tags)."""

    name = "musicnn_mtt"
    dataset = "MTT"
    tag_names = tuple(MTT_TAGS)


@register_backbone
class MusiCNNMSD(MusiCNNEmbedder):
    """MusiCNN trained on the Million Song Dataset (50 last.fm tags)."""

    name = "musicnn_msd"
    dataset = "MSD"
    tag_names = tuple(MSD_TAGS)
