using System.Text.Json;
using ModelGen.Backends.Torch;
using ModelGen.Data;
using ModelGen.Training;
using static TorchSharp.torch;

namespace ModelGen.Tests.Training;

/// <summary>Trainer behaviour on a 2-layer model and synthetic packed windows (fast, no tokenizer).</summary>
public class TrainerTests
{
    private static readonly ModelConfig Tiny = new()
    {
        Family = "llama", Layers = 2, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 128, Vocab = 96,
        MaxPositions = 256, BosTokenId = 1, EosTokenId = 2,
    };

    private static IReadOnlyList<PackedWindow> Windows(int length = 48)
    {
        // Documents with learnable structure: arithmetic progressions mod 90 (offset past the special ids).
        var random = new Random(5);
        var docs = Enumerable.Range(0, 60).Select(_ =>
        {
            int start = random.Next(90), step = random.Next(1, 4), n = random.Next(5, 40);
            return (IReadOnlyList<int>)Enumerable.Range(0, n).Select(i => 3 + (start + i * step) % 90).ToArray();
        });
        return new DocumentPacker(length, 1, 2).Pack(docs).ToList();
    }

    private static CausalLMModule NewModel(int seed = 7)
    {
        random.manual_seed(seed);
        return new CausalLMModule(Tiny);
    }

    private static TrainingOptions Options(int steps) => new()
    {
        Steps = steps, SequenceLength = 48, BatchSize = 2, LearningRate = 3e-3, WarmupSteps = 2, SaveEvery = 5, Seed = 11,
    };

    [Fact]
    public void Loss_falls_on_learnable_data()
    {
        using var folder = new ScratchFolder();
        var result = Trainer.Start(NewModel(), Options(30), Windows(), folder.Path, "test").Run();
        double first = result.Metrics.Take(5).Average(m => m.Loss), last = result.Metrics.TakeLast(5).Average(m => m.Loss);
        Assert.True(last < first - 0.5, $"loss {first} → {last}");
    }

    [Fact]
    public void Twenty_steps_straight_equal_ten_plus_a_resumed_ten_bit_for_bit()
    {
        using var straight = new ScratchFolder();
        using var split = new ScratchFolder();
        var all = Trainer.Start(NewModel(), Options(20), Windows(), straight.Path, "test").Run().Metrics;

        Trainer.Start(NewModel(), Options(10), Windows(), split.Path, "test").Run();
        var resumed = Trainer.Resume(NewModel(seed: 99), 20, Windows(), split.Path).Run();
        Assert.Equal(11, resumed.FirstStep);

        var lines = File.ReadAllLines(Path.Combine(split.Path, "metrics.jsonl"));
        Assert.Equal(Enumerable.Range(1, 20), lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt32()));
        var splitLosses = lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble());
        Assert.Equal(all.Select(m => m.Loss), splitLosses);
    }

    [Fact]
    public void A_cosine_schedule_keeps_its_horizon_when_the_run_is_extended()
    {
        using var straight = new ScratchFolder();
        using var split = new ScratchFolder();
        var cosine = Options(16) with { Schedule = LearningRateSchedule.Cosine };
        var all = Trainer.Start(NewModel(), cosine, Windows(), straight.Path, "test").Run().Metrics;
        Trainer.Start(NewModel(), cosine with { Steps = 8, DecaySteps = 16 }, Windows(), split.Path, "test").Run();
        var rest = Trainer.Resume(NewModel(), 16, Windows(), split.Path).Run().Metrics;
        Assert.Equal(all.Skip(8).Select(m => (m.Loss, m.LearningRate)), rest.Select(m => (m.Loss, m.LearningRate)));
    }

    [Fact]
    public void A_crash_during_a_save_leaves_the_previous_checkpoint_intact()
    {
        using var folder = new ScratchFolder();
        var trainer = Trainer.Start(NewModel(), Options(5), Windows(), folder.Path, "test");
        trainer.Run(); // saves at step 5
        string checkpoint = Path.Combine(folder.Path, TrainingCheckpoint.FolderName);
        byte[] before = File.ReadAllBytes(Path.Combine(checkpoint, "model.safetensors"));

        var more = Trainer.Resume(NewModel(), 6, Windows(), folder.Path);
        more.Run(); // step 6 saves normally; now crash the next save after its files are written, before the swap
        Assert.Throws<IOException>(() => more.Save(beforeSwap: () => throw new IOException("simulated crash")));
        Assert.Equal(6, TrainingCheckpoint.ReadState(checkpoint).Step);
        Assert.Empty(Directory.GetDirectories(folder.Path, ".checkpoint.new-*"));

        // And the swap itself: the old folder moved aside and the new one not yet in place is repaired on load.
        Directory.Move(checkpoint, Path.Combine(folder.Path, ".checkpoint.old-test"));
        Assert.Equal(checkpoint, TrainingCheckpoint.Locate(folder.Path));
        Assert.NotEqual(before, File.ReadAllBytes(Path.Combine(checkpoint, "model.safetensors")));
        Assert.Equal(6, Trainer.Resume(NewModel(), 6, Windows(), folder.Path).Step);
    }

    [Fact]
    public void Non_finite_losses_skip_the_update_then_stop_without_saving_a_NaN_checkpoint()
    {
        using var folder = new ScratchFolder();
        var trainer = Trainer.Start(NewModel(), Options(12), Windows(), folder.Path, "test");
        trainer.InjectNonFiniteLoss = step => step >= 7;
        var warnings = new List<string>();
        trainer.Warning += warnings.Add;
        var result = trainer.Run();
        Assert.True(result.StoppedOnNonFiniteLoss);
        Assert.Equal(6, result.LastStep);
        Assert.Equal(3, warnings.Count);
        Assert.Contains("NaN", warnings[0]);
        var state = TrainingCheckpoint.ReadState(Path.Combine(folder.Path, TrainingCheckpoint.FolderName));
        Assert.Equal(5, state.Step);
        Assert.All(trainer.Model.parameters(), p => Assert.True(p.isfinite().all().item<bool>()));
    }

    [Fact]
    public void Without_clipping_the_gradient_norm_is_still_reported()
    {
        using var folder = new ScratchFolder();
        var result = Trainer.Start(NewModel(), Options(2) with { ClipNorm = 0 }, Windows(), folder.Path, "test").Run();
        Assert.All(result.Metrics, m => Assert.True(double.IsFinite(m.GradNorm) && m.GradNorm > 0));
        Assert.Equal(2, File.ReadAllLines(Path.Combine(folder.Path, "metrics.jsonl")).Length);
    }

    [Fact]
    public void A_window_longer_than_the_model_context_is_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => (Options(1) with { SequenceLength = 512 }).Validate(Tiny));
        Assert.Contains("max_position_embeddings = 256", e.Message);
    }

    [Fact]
    public void Learning_rate_warms_up_linearly_then_follows_the_cosine_to_its_floor()
    {
        var o = new TrainingOptions { Steps = 110, WarmupSteps = 10, LearningRate = 1e-3, MinLearningRateRatio = 0.1, Schedule = LearningRateSchedule.Cosine };
        Assert.Equal(1e-4, o.LearningRateAt(1), 12);
        Assert.Equal(1e-3, o.LearningRateAt(10), 12);
        Assert.Equal(0.55e-3, o.LearningRateAt(60), 12);
        Assert.Equal(1e-4, o.LearningRateAt(110), 12);
        Assert.Equal(1e-3, (o with { Schedule = LearningRateSchedule.Constant }).LearningRateAt(80), 12);
    }

    [Fact]
    public void Bf16_autocast_trains_with_fp32_master_weights()
    {
        using var folder = new ScratchFolder();
        var model = NewModel();
        var result = Trainer.Start(model, Options(12) with { Bf16Autocast = true }, Windows(), folder.Path, "test").Run();
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.True(result.Metrics[^1].Loss < result.Metrics[0].Loss);
    }

    [Fact]
    public void Saved_checkpoints_load_as_HF_checkpoints()
    {
        using var folder = new ScratchFolder();
        var trainer = Trainer.Start(NewModel(), Options(2), Windows(), folder.Path, "test");
        trainer.Run();
        var (config, loaded) = PretrainedModel.Load(Path.Combine(folder.Path, TrainingCheckpoint.FolderName), Models.ModelCatalog.All);
        Assert.Equal(Tiny.Hidden, config.Hidden);
        using var ids = tensor(new long[] { 1, 5, 9, 13 }, [1, 4]);
        using var _ = no_grad();
        trainer.Model.eval();
        var a = trainer.Model.forward(ids, AttentionInputs.Causal(1, 4));
        var b = loaded.forward(ids, AttentionInputs.Causal(1, 4));
        Assert.Equal(0f, (a - b).abs().max().item<float>());
    }
}
