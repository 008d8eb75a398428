"""Tests of the RSEE model core: shapes, both APIs, the exit rule, skips and the FLOPs table."""

from __future__ import annotations

import math

import pytest
import torch

from rsee_ros.model import (
    BACKBONES,
    NEVER_EXIT,
    InferenceSettings,
    RSEEConfig,
    StreamingSession,
    build_rsee,
)
from rsee_ros.model import step as model_step
from rsee_ros.model.flops import FlopsTable
from rsee_ros.model.gate import should_exit

SMALL = (64, 48, 40)


def diverse_model(**config: object) -> torch.nn.Module:
    """A random model whose selector and classifier make varied, input-dependent choices."""
    torch.manual_seed(0)
    cfg = RSEEConfig(num_classes=5, resolutions=SMALL, selector_hidden=32,
                     accumulator_hidden=32, **config)
    model = build_rsee(cfg)
    calibrate_batchnorm(model, torch.randn(16, 3, 64, 64))
    with torch.no_grad():
        model.selector.policy.weight.normal_(0, 2.0)
        model.selector.policy.bias.zero_()
        head = model.accumulator.head[-1]
        head.weight.normal_(0, 3.0)
    return model


def calibrate_batchnorm(model: torch.nn.Module, frames: torch.Tensor) -> None:
    """Give BatchNorm real statistics (a random network's defaults make features vanish)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model_step.look(model, frames, torch.zeros(len(frames), model.accumulator.state_dim))
        for index in range(model.config.num_resolutions):
            model.frame_features(frames, index)
    model.eval()


def test_selector_features_are_input_dependent_enough() -> None:
    model = diverse_model()
    frames = torch.randn(8, 12, 3, 64, 64)
    out = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
    used = set(out.resolutions[out.looked_at].tolist())
    assert len(used) >= 3, f"test model too uniform: {used}"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_gives_features_and_predictions(name: str) -> None:
    cfg = RSEEConfig(num_classes=7, backbone=name, resolutions=SMALL, selector_hidden=16,
                     accumulator_hidden=16)
    model = build_rsee(cfg).eval()
    frames = torch.randn(2, 3, 3, 64, 64)
    for index, resolution in enumerate(SMALL):
        feats = model.frame_features(frames[:, 0], index)
        assert feats.shape == (2, BACKBONES[name].feature_dim)
        assert resolution in model.flops.backbone
    out = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
    assert out.probabilities.shape == (2, 7)
    assert out.resolutions.shape == (2, 3)
    assert torch.allclose(out.probabilities.sum(-1), torch.ones(2))
    train = model.train().forward_train(frames, temperature=1.0)
    assert train.step_logits.shape == (2, 3, 7)
    assert train.decisions.shape == (2, 3, cfg.num_actions)


VARIANTS = {
    "gru-acc": {},
    "mean-acc": {"accumulator": "mean"},
    "max-acc-learned-gate": {"accumulator": "max", "gate": "learned"},
    "shared-selector": {"selector_shares_backbone": True, "selector_rnn": "gru"},
    "partial-selector-with-state": {"selector_shares_backbone": True, "selector_blocks": 7,
                                    "selector_sees_state": True},
    "per-resolution": {"backbone_mode": "per_resolution",
                       "per_resolution_backbones": ("resnet18", "mobilenet_v2", "mobilenet_v2")},
    "temporal-shift-after-partial-look": {"selector_shares_backbone": True, "selector_blocks": 7,
                                          "selector_sees_state": True, "temporal_shift": 0.25},
    "temporal-shift-chosen-blocks": {"temporal_shift": 0.125, "temporal_shift_blocks": (3, 6, 13),
                                     "accumulator": "mean"},
    "spatial-accumulator": {"accumulator": "conv_gru", "accumulator_grid": 3, "skip_steps": ()},
    "spatial-accumulator-temporal-shift-partial-look": {
        "accumulator": "conv_gru", "accumulator_grid": 2, "selector_shares_backbone": True,
        "selector_blocks": 7, "selector_sees_state": True, "temporal_shift": 0.125},
    "temporal-shift-resnet": {"backbone": "resnet18", "temporal_shift": 0.125, "skip_steps": (),
                              "temporal_shift_blocks": (5, 7, 9)},
}


def exit_scores(model: torch.nn.Module, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gate's score after every step ``(B, T)`` of the policy run to the end, and which steps
    processed a frame, from the training pass's argmax decisions (eval mode).

    The classifier and the learned gate are scaled first so that their logits have a standard
    deviation of 1.5 over these frames: the scores spread over (0, 1) instead of saturating."""
    with torch.no_grad():
        out = model.eval().forward_train(frames, temperature=None)
        model.accumulator.head[-1].weight.mul_(1.5 / out.step_logits.std())
        model.exit_gate.net[-1].weight.mul_(1.5 / out.exit_logits.std())
        out = model.forward_train(frames, temperature=None)
    if model.config.gate == "learned":
        scores = torch.sigmoid(out.exit_logits)
    else:
        scores = torch.softmax(out.step_logits, -1).amax(-1)
    return scores, out.processed > 0


def threshold_splitting(scores: torch.Tensor, processed: torch.Tensor, exiting: range
                        ) -> tuple[float, int]:
    """An exit threshold that some of the videos (a number in ``exiting``) reach and the others
    never do: the middle of the widest gap between the videos' peak scores there, asserted to be
    far wider than the rounding differences between batched and streamed inference."""
    peaks = torch.where(processed, scores, 0.0).amax(1).sort(descending=True).values.tolist()
    count = max(exiting, key=lambda k: peaks[k - 1] - peaks[k])
    assert peaks[count - 1] - peaks[count] > 0.01, f"test model's peak scores too close: {peaks}"
    return (peaks[count - 1] + peaks[count]) / 2, count


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
@pytest.mark.parametrize("exiting", [range(1, 5), range(5, 8)], ids=["few-exit", "most-exit"])
def test_streaming_and_batched_make_the_same_decisions(variant: dict, exiting: range) -> None:
    """Of 8 videos, a few (or most) exit early, at the first frame whose score reaches the
    threshold, and the others run to the end: streamed frame by frame or batched alike."""
    model = diverse_model(**variant)
    frames = torch.randn(8, 10, 3, 64, 64)
    scores, processed = exit_scores(model, frames)
    threshold, count = threshold_splitting(scores, processed, exiting)
    reached = processed & (scores >= threshold)
    steps = torch.arange(frames.shape[1])
    expected_exit = torch.where(reached, steps, frames.shape[1] - 1).amin(1)
    out = model.infer_batch(frames, exit_threshold=threshold)
    assert out.exited_early.tolist() == reached.any(1).tolist()
    assert int(out.exited_early.sum()) == count
    assert out.exit_step.tolist() == expected_exit.tolist()
    for b in range(frames.shape[0]):
        session = StreamingSession(model, exit_threshold=threshold)
        resolutions = []
        exit_step = frames.shape[1] - 1
        for t in range(frames.shape[1]):
            step = session.push(frames[b, t])
            assert step.frame_index == t
            resolutions.append(step.resolution)
            if step.exited:
                exit_step = t
        assert resolutions == out.resolutions[b].tolist()
        assert exit_step == int(out.exit_step[b])
        assert session.done == bool(out.exited_early[b])
        assert session.frames_processed == int(out.frames_processed[b])
        assert session.gmacs == pytest.approx(float(out.gmacs[b]), rel=1e-9)
        # batched and single-frame convolutions round differently; the test model's saturated
        # logits amplify that to ~1e-4 in probability, far below any decision margin
        assert torch.allclose(session.probabilities, out.probabilities[b], atol=1e-3)
    assert out.resolutions.ne(0).any()


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_training_argmax_pass_makes_the_inference_decisions(variant: dict) -> None:
    """One step plan: the training pass with argmax decisions looks at, processes and pays for
    the same frames as inference without exits (it computes every row, inference only the
    looked-at ones)."""
    model = diverse_model(**variant)
    frames = torch.randn(6, 9, 3, 64, 64)
    with torch.no_grad():
        train = model.eval().forward_train(frames, temperature=None)
    out = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
    resolutions = torch.tensor(model.config.resolutions)
    chosen = train.decisions[..., : model.config.num_resolutions]
    trained_resolutions = torch.where(chosen.sum(-1) > 0, resolutions[chosen.argmax(-1)], 0)
    assert torch.equal(train.looked_at, out.looked_at)
    assert torch.equal(trained_resolutions, out.resolutions)
    assert torch.allclose(train.gmacs.double(), out.gmacs, rtol=1e-6)
    assert torch.allclose(train.step_logits[:, -1], out.step_logits[:, -1], atol=1e-3)


def test_threshold_zero_exits_after_the_first_processed_frame() -> None:
    model = diverse_model()
    frames = torch.randn(6, 8, 3, 64, 64)
    no_skip = model.infer_batch(frames, exit_threshold=0.0, skip_enabled=False)
    assert no_skip.exited_early.all()
    assert (no_skip.exit_step == 0).all() and (no_skip.frames_processed == 1).all()
    out = model.infer_batch(frames, exit_threshold=0.0)
    assert out.resolutions.ne(0).any()
    for b in range(6):
        processed_steps = out.resolutions[b].nonzero().squeeze(1)
        if processed_steps.numel() == 0:  # every looked-at frame was skipped: nothing to exit on
            assert not out.exited_early[b]
            continue
        assert out.frames_processed[b] == 1
        assert out.exited_early[b]
        assert out.exit_step[b] == processed_steps[0]
    session = StreamingSession(model, exit_threshold=0.0, skip_enabled=False)
    steps = [session.push(frames[0, t]) for t in range(8)]
    assert [s.exited for s in steps] == [True] + [False] * 7
    assert all(s.skipped and not s.looked_at for s in steps[1:])


@pytest.mark.parametrize("gate", ["confidence", "learned"])
def test_never_exit_threshold_never_exits_early(gate: str) -> None:
    model = diverse_model()
    frames = torch.randn(4, 8, 3, 64, 64)
    out = model.infer_batch(frames, exit_threshold=NEVER_EXIT, gate=gate)
    assert not out.exited_early.any()
    assert (out.exit_step == 7).all()
    saturated = torch.tensor([1.0, 0.5])
    assert should_exit(saturated, NEVER_EXIT).tolist() == [False, False]
    assert should_exit(saturated, 0.5).tolist() == [True, True]
    assert should_exit(saturated, 0.9).tolist() == [True, False]


@pytest.mark.parametrize("threshold", [-0.1, 1.01, 2.0, math.inf, math.nan, True, "0.5"])
def test_exit_threshold_outside_zero_to_one_is_refused(threshold: object) -> None:
    with pytest.raises(ValueError, match="exit_threshold must be between 0 and 1.0"):
        InferenceSettings(exit_threshold=threshold)
    with pytest.raises(ValueError, match="exit_threshold"):
        InferenceSettings().with_changes(exit_threshold=threshold)
    assert InferenceSettings(exit_threshold=0).exit_threshold == 0
    assert InferenceSettings(exit_threshold=NEVER_EXIT).exit_threshold == 1.0


def test_invalid_policy_and_gate_are_refused() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        InferenceSettings(policy="greedy")
    with pytest.raises(ValueError, match="gate must be one of"):
        InferenceSettings(gate="always")
    model = diverse_model()
    with pytest.raises(ValueError, match="fixed_resolution 100"):
        model.infer_batch(torch.randn(1, 2, 3, 64, 64), policy="uniform", fixed_resolution=100)


@pytest.mark.parametrize("skip_index,skip", [(0, 1), (1, 2), (2, 4)])
def test_skip_actions_advance_the_frame_index(skip_index: int, skip: int) -> None:
    model = diverse_model()
    num_res = model.config.num_resolutions
    with torch.no_grad():
        model.selector.policy.weight.zero_()
        model.selector.policy.bias.fill_(-10.0)
        model.selector.policy.bias[num_res + skip_index] = 10.0
    frames = torch.randn(1, 9, 3, 64, 64)
    session = StreamingSession(model, exit_threshold=NEVER_EXIT)
    looked = [t for t in range(9) if session.push(frames[0, t]).looked_at]
    assert looked == list(range(0, 9, skip))
    out = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
    assert out.looked_at[0].nonzero().squeeze(1).tolist() == looked
    assert out.frames_processed[0] == 0
    assert float(out.gmacs[0]) == pytest.approx(len(looked) * model.flops.selector)


def test_skip_disabled_and_allowed_resolutions_are_respected() -> None:
    model = diverse_model()
    frames = torch.randn(6, 8, 3, 64, 64)
    out = model.infer_batch(frames, exit_threshold=NEVER_EXIT, skip_enabled=False,
                            allowed_resolutions=(48, 40))
    assert out.looked_at.all()
    assert set(out.resolutions.unique().tolist()) <= {48, 40}
    with pytest.raises(ValueError, match="not among"):
        model.infer_batch(frames, allowed_resolutions=(100,))


def test_uniform_policy_costs_exactly_the_uniform_baseline() -> None:
    model = diverse_model()
    frames = torch.randn(2, 6, 3, 64, 64)
    out = model.infer_batch(frames, InferenceSettings(exit_threshold=NEVER_EXIT, policy="uniform"))
    assert (out.resolutions == 64).all()
    expected = model.flops.uniform_video(64, 6)
    assert torch.allclose(out.gmacs, torch.full((2,), expected, dtype=torch.float64))
    random = model.infer_batch(frames, exit_threshold=NEVER_EXIT, policy="random")
    assert random.resolutions.shape == (2, 6)


def test_learned_gate_uses_previous_representation() -> None:
    model = diverse_model(gate="learned")
    frames = torch.randn(3, 6, 3, 64, 64)
    low = model.infer_batch(frames, exit_threshold=0.0, skip_enabled=False)
    assert low.exited_early.all()
    never = model.infer_batch(frames, exit_threshold=NEVER_EXIT, skip_enabled=False)
    assert not never.exited_early.any()
    state = model.initial_state(1, InferenceSettings(gate="learned"))
    previous = model.accumulator.readout(state.accumulator)
    current = torch.randn_like(previous)
    assert not torch.allclose(model.exit_gate(current, previous),
                              model.exit_gate(current, current + 1.0))


def test_flops_match_the_papers() -> None:
    from rsee_ros.model.flops import backbone_gmacs

    resnet = backbone_gmacs("resnet50", (224,))
    assert 4.08 <= resnet[224] <= 4.12
    mobilenet = backbone_gmacs("mobilenet_v2", (224, 84))
    assert round(mobilenet[224], 2) == 0.30
    assert mobilenet[84] < mobilenet[224] / 5


def test_rsee_flops_command_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rsee_ros.cli import main

    assert main(["flops", "--backbone", "resnet50", "--resolutions", "224", "168", "112", "84",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 4.08 <= report["backbone_per_frame"]["224"] <= 4.12
    assert list(report["backbone_per_frame"]) == ["224", "168", "112", "84"]


def test_forward_train_gradients_reach_the_selector() -> None:
    model = diverse_model().train()
    frames = torch.randn(2, 4, 3, 64, 64)
    out = model.forward_train(frames, temperature=5.0, compute_all_resolutions=True)
    loss = torch.nn.functional.cross_entropy(out.step_logits[:, -1], torch.tensor([0, 1]))
    (loss + out.gmacs.mean()).backward()
    assert model.selector.policy.weight.grad is not None
    assert model.selector.policy.weight.grad.abs().sum() > 0


def test_invalid_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="descending"):
        RSEEConfig(num_classes=3, resolutions=(84, 224))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_rsee(RSEEConfig(num_classes=3, backbone="vgg"))


def test_partial_selector_look_is_continued_not_recomputed() -> None:
    model = diverse_model(selector_shares_backbone=True, selector_blocks=7,
                          selector_sees_state=True)
    frames = torch.randn(3, 3, 64, 64)
    low_index = model.config.num_resolutions - 1
    with torch.no_grad():
        look = model_step.look(model, frames, torch.zeros(3, model.accumulator.state_dim))
        assert look.seen.shape == (3, 32 + model.accumulator.state_dim)  # block 7: 32 channels
        assert look.backbone_pass is not None
        assert torch.allclose(model_step.finish_look(model, look.backbone_pass),
                              model.frame_features(frames, low_index), atol=1e-5)
    table = model.flops
    low = model.config.selector_resolution
    assert 0 < table.details["selector_cnn"] < table.backbone[low] / 2
    assert table.backbone_cost(low, reused=True) == pytest.approx(
        table.backbone[low] - table.details["selector_cnn"])
    assert FlopsTable.from_dict(table.to_dict()).backbone_cost(low, reused=True) == \
        pytest.approx(table.backbone_cost(low, reused=True))
    # a frame processed at the lowest resolution pays for the backbone once (plus the
    # selector's recurrent step and the head), not for the selector's blocks twice
    out = model.infer_batch(torch.randn(4, 6, 3, 64, 64), exit_threshold=NEVER_EXIT,
                            allowed_resolutions=(low,), skip_enabled=False)
    per_frame = table.backbone[low] + table.details["selector_rnn"] + table.head
    assert torch.allclose(out.gmacs, torch.full((4,), 6 * per_frame, dtype=torch.float64))


def test_selector_blocks_need_the_shared_backbone() -> None:
    with pytest.raises(ValueError, match="selector_blocks"):
        RSEEConfig(num_classes=3, selector_blocks=7)
    with pytest.raises(ValueError, match="selector_blocks"):
        RSEEConfig(num_classes=3, selector_shares_backbone=True, selector_blocks=0)
    with pytest.raises(ValueError, match="blocks must be between"):
        build_rsee(RSEEConfig(num_classes=3, selector_shares_backbone=True, selector_blocks=19))
