"""Temporal modelling: the online temporal shift (what its cache holds after skips, resolution
changes and a new window; the configuration's rules; checkpoints), the spatial accumulator's
grid pooling, and a direction task that a globally pooled model cannot learn and both do."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rsee_ros.model import InferenceSettings, RSEEConfig, StreamingSession, build_rsee
from rsee_ros.model import step as model_step
from rsee_ros.model.checkpoint import load_checkpoint, save_checkpoint
from rsee_ros.model.temporal import ShiftCache, resample

SMALL = dict(num_classes=3, resolutions=(64, 48, 40), selector_hidden=16, accumulator_hidden=16)


def shifted_model(**config: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_rsee(RSEEConfig(**SMALL, temporal_shift=0.25, **config)).eval()


class Recorder:
    """What the first shifted block saw on each call: the frame's own channels (``present``)
    and those its residual branch got from the past (``past``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        shift = model.backbone.shifts[0]
        self.fold = shift.fold
        self.present: list[torch.Tensor] = []
        self.past: list[torch.Tensor] = []
        shift.register_forward_pre_hook(
            lambda _m, args: self.present.append(args[0][:, :self.fold].clone()))
        shift.branch.register_forward_pre_hook(
            lambda _m, args: self.past.append(args[0][:, :self.fold].clone()))


def run_steps(model, frames: torch.Tensor, actions: list[int], cache: ShiftCache) -> None:
    """Process one video's frames with the given actions (resolution indices, or a skip)."""
    for frame, action in zip(frames, actions, strict=True):
        with torch.no_grad():
            model_step.process(model, frame[None], torch.tensor([action]),
                               torch.tensor([True]), None, shift_cache=cache)


def test_after_a_skip_the_past_is_the_last_processed_frame() -> None:
    model = shifted_model()
    recorder = Recorder(model)
    frames = torch.randn(3, 3, 64, 64)
    skip = model.config.num_resolutions  # the first skip action
    run_steps(model, frames, [0, skip, 0], model.new_shift_cache(1, torch.device("cpu")))
    assert len(recorder.present) == 2  # the skipped frame went through no backbone
    assert torch.count_nonzero(recorder.past[0]) == 0  # a video's first frame: zeros
    assert torch.equal(recorder.past[1], recorder.present[0])
    assert not torch.equal(recorder.present[1], recorder.present[0])


def test_a_resolution_change_resamples_the_past() -> None:
    model = shifted_model()
    recorder = Recorder(model)
    frames = torch.randn(3, 3, 64, 64)
    run_steps(model, frames, [0, 2, 2], model.new_shift_cache(1, torch.device("cpu")))
    high, low = recorder.present[0], recorder.present[1]
    assert high.shape[-2:] != low.shape[-2:]
    assert torch.allclose(recorder.past[1], resample(high, low.shape[-2:]))
    assert torch.equal(recorder.past[2], low)  # same resolution: the maps as they were


def test_rows_of_a_batch_keep_their_own_past() -> None:
    """Two videos in one batch, at different resolutions: each reads its own last frame."""
    model = shifted_model()
    frames = torch.randn(2, 2, 3, 64, 64)
    cache = model.new_shift_cache(2, torch.device("cpu"))
    with torch.no_grad():
        for t, actions in enumerate(([0, 2], [1, 1])):
            model_step.process(model, frames[:, t], torch.tensor(actions),
                               torch.tensor([True, True]), None, shift_cache=cache)
    assert cache.source.tolist() == [1, 1]
    for row in range(2):
        alone = model.new_shift_cache(1, torch.device("cpu"))
        run_steps(model, frames[row], [[0, 2][row], 1], alone)
        for block in range(len(cache.maps)):
            assert torch.allclose(cache.maps[block][1][row], alone.maps[block][1][0], atol=1e-5)


def test_a_new_window_starts_from_zeros() -> None:
    model = shifted_model()
    frames = torch.randn(4, 3, 64, 64)
    settings = InferenceSettings(policy="uniform", exit_threshold=1.0)
    session = StreamingSession(model, settings)
    for frame in frames:
        session.push(frame)
    recorder = Recorder(model)
    session.reset()
    session.push(frames[2])
    assert torch.count_nonzero(recorder.past[0]) == 0
    fresh = StreamingSession(model, settings)
    fresh.push(frames[2])
    assert torch.equal(session.probabilities, fresh.probabilities)


def test_clips_shift_like_streaming_frames() -> None:
    """Warm-up's batched clips (each frame shifted from the one before) equal streaming every
    frame at one resolution."""
    model = shifted_model()
    frames = torch.randn(2, 5, 3, 64, 64)
    with torch.no_grad():
        batched = model.uniform_step_logits(frames, 1)
    for video in range(2):
        session = StreamingSession(model, InferenceSettings(
            policy="uniform", fixed_resolution=48, exit_threshold=1.0))
        for t in range(5):
            session.push(frames[video, t])
            assert torch.allclose(torch.softmax(batched[video, t], -1), session.probabilities,
                                  atol=1e-5)


@pytest.mark.parametrize(("config", "message"), [
    (dict(temporal_shift=0.2, backbone_mode="per_resolution"), "backbone_mode 'shared'"),
    (dict(temporal_shift=0.2, selector_shares_backbone=True), "needs selector_blocks"),
    (dict(temporal_shift_blocks=(3,)), "needs temporal_shift > 0"),
    (dict(temporal_shift=1.0), "in \\[0, 1\\)"),
])
def test_the_configuration_refuses_what_cannot_work(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RSEEConfig(**SMALL, **config)


@pytest.mark.parametrize(("config", "message"), [
    (dict(temporal_shift_blocks=(4,)), "block 4 has no residual path"),
    (dict(selector_shares_backbone=True, selector_blocks=7, temporal_shift_blocks=(5,)),
     "inside the selector's look"),
    (dict(selector_shares_backbone=True, selector_blocks=17), "no block is shifted"),
])
def test_building_refuses_blocks_that_cannot_shift(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_rsee(RSEEConfig(**SMALL, temporal_shift=0.25, **config))


def test_default_blocks_are_the_residual_ones_after_the_look() -> None:
    model = shifted_model(selector_shares_backbone=True, selector_blocks=7)
    trunk = model.backbone.net.trunk
    wrapped = [i for i, block in enumerate(trunk)
               if any(s in block.modules() for s in model.backbone.shifts)]
    assert wrapped == [8, 9, 10, 12, 13, 15, 16]
    assert [s.fold for s in model.backbone.shifts] == [16, 16, 16, 24, 24, 40, 40]


def test_the_shift_costs_no_flops_and_checkpoints_keep_it(tmp_path) -> None:
    plain = build_rsee(RSEEConfig(**SMALL))
    model = shifted_model()
    assert model.flops.backbone == plain.flops.backbone
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"])
    loaded = load_checkpoint(path).model.eval()
    assert loaded.config.temporal_shift == 0.25 and len(loaded.backbone.shifts) == 10
    frames = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.uniform_step_logits(frames, 0),
                           model.uniform_step_logits(frames, 0))


def direction_clips(count: int, seed: int, steps: int = 4, size: int = 32
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright square crossing a dark frame left to right (class 0) or right to left (1, the
    same clip reversed): the two classes hold the same frames, in opposite orders."""
    generator = torch.Generator().manual_seed(seed)
    clips = torch.full((count, steps, 3, size, size), -1.0)
    labels = torch.randint(0, 2, (count,), generator=generator)
    for i in range(count):
        row = int(torch.randint(2, size - 10, (1,), generator=generator))
        start = int(torch.randint(0, 8, (1,), generator=generator))
        for t in range(steps):
            column = start + 4 * t
            clips[i, t, :, row:row + 8, column:column + 8] = 1.0
        if labels[i]:
            clips[i] = clips[i].flip(0)
    return clips, labels


def direction_model(**config: object) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = dict(num_classes=2, resolutions=(32,), skip_steps=(), accumulator="mean",
                    selector_hidden=8, accumulator_hidden=8, dropout=0.0)
    return build_rsee(RSEEConfig(**{**settings, **config}))


def test_a_pooled_model_cannot_tell_a_clip_from_its_reversal() -> None:
    """Globally pooled frames averaged over time: the same prediction either way round."""
    model = direction_model().eval()
    clips, _ = direction_clips(8, seed=1)
    with torch.no_grad():
        forward = model.uniform_step_logits(clips, 0)[:, -1]
        backward = model.uniform_step_logits(clips.flip(1), 0)[:, -1]
    assert torch.allclose(forward, backward, atol=1e-5)


@pytest.mark.parametrize("config", [
    dict(temporal_shift=0.25),
    dict(accumulator="conv_gru", accumulator_grid=2, accumulator_hidden=16),
], ids=["temporal-shift", "spatial-accumulator"])
def test_temporal_models_learn_direction(config: dict) -> None:
    """With the shift (same accumulator), or a spatial accumulator in place of pooling, a few
    steps of warm-up training tell the direction of held-out clips (chance is 50%, and the
    pooled model cannot leave it)."""
    model = direction_model(**config)
    body = [p for name, p in model.named_parameters() if not name.startswith("selector")]
    optimiser = torch.optim.Adam(body, lr=3e-3)
    model.train()
    for step in range(30):
        clips, labels = direction_clips(16, seed=100 + step)
        loss = F.cross_entropy(model.uniform_step_logits(clips, 0)[:, -1], labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for module in model.modules():  # running statistics of the trained weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for seed in range(500, 504):
            model.uniform_step_logits(direction_clips(16, seed=seed)[0], 0)
        model.eval()
        clips, labels = direction_clips(64, seed=1)
        accuracy = (model.uniform_step_logits(clips, 0)[:, -1].argmax(1) == labels).float()
    assert float(accuracy.mean()) >= 0.8


def test_pretrained_weights_load_into_the_shifted_blocks() -> None:
    plain = build_rsee(RSEEConfig(**SMALL), pretrained=True)
    model = build_rsee(RSEEConfig(**SMALL, temporal_shift=0.25), pretrained=True)
    ours, theirs = model.backbone.net.trunk[8].conv, plain.backbone.net.trunk[8].conv
    assert torch.equal(ours.branch[0][0].weight, theirs[0][0].weight)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (4, 3), (7, 7)])
def test_grid_pooling_is_adaptive_average_pooling(size: tuple[int, int]) -> None:
    from rsee_ros.model.backbones import GridPool

    maps = torch.randn(2, 5, *size)
    assert torch.allclose(GridPool(3)(maps), torch.nn.AdaptiveAvgPool2d(3)(maps), atol=1e-6)


def test_the_flops_table_counts_the_spatial_accumulator() -> None:
    """The head's GMACs are the ConvGRU's convolutions, the classifier and the learned gate."""
    from rsee_ros.model.flops import count_gmacs

    model = build_rsee(RSEEConfig(**{**SMALL, "accumulator_hidden": 8}, accumulator="conv_gru",
                                  accumulator_grid=3)).eval()
    channels, hidden, cells = 1280, 8, 9
    convs = cells * (channels * hidden + 2 * hidden * 2 * hidden * 9 + 2 * hidden * hidden * 9)
    classifier = hidden * cells * 3
    representation = torch.zeros(1, hidden * cells)
    gate = count_gmacs(lambda: model.exit_gate(representation, representation))
    assert model.flops.head == pytest.approx((convs + classifier) / 1e9 + gate, rel=1e-6)
