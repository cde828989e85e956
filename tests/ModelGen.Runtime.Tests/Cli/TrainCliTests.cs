using System.Text.Json;
using ModelGen.Cli;

namespace ModelGen.Tests.Cli;

/// <summary><c>modelgen train</c> and <c>generate</c> in-process: the acceptance runs and the input errors.</summary>
[Collection("Console")]
public class TrainCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    private static double[] Losses(string dir) =>
        File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToArray();

    [Theory]
    [InlineData("anchor")]
    [InlineData("full")]
    public void Forty_steps_of_512_tokens_drive_the_loss_down(string mask)
    {
        using var run = new ScratchFolder();
        var (code, output, err) = Run("train", "--steps", "40", "--seq", "512", "--mask", mask, "--out", run.Path, "--plain");
        Assert.True(code == 0, err);
        var losses = Losses(run.Path);
        Assert.Equal(40, losses.Length);
        double first = losses.Take(10).Average(), last = losses.TakeLast(10).Average();
        Assert.True(last < first - 2.0, $"{mask}: mean loss {first:F3} → {last:F3}");
        Assert.Contains("checkpoint:", output);

        var (genCode, text, _) = Run("generate", run.Path, "--prompt", "The", "--tokens", "8", "--temperature", "0");
        Assert.Equal(0, genCode);
        Assert.StartsWith("The", text);
    }

    [Fact]
    public void A_window_longer_than_the_model_context_exits_2()
    {
        using var run = new ScratchFolder();
        var (code, _, err) = Run("train", "--steps", "1", "--seq", "4096", "--out", run.Path, "--plain");
        Assert.Equal(2, code);
        Assert.Contains("max_position_embeddings = 2048", err);
    }

    [Fact]
    public void A_tokenizer_that_does_not_fit_the_vocabulary_exits_2()
    {
        using var run = new ScratchFolder();
        var (code, _, err) = Run("train", "--model", "MicroLlama", "--steps", "1", "--seq", "64", "--out", run.Path, "--plain");
        Assert.Equal(2, code);
        Assert.Contains("vocab_size", err);
        Assert.Contains("do not match", err);
    }

    [Fact]
    public void An_empty_corpus_exits_2_naming_it()
    {
        using var run = new ScratchFolder();
        using var corpus = new ScratchFolder();
        File.WriteAllText(Path.Combine(corpus.Path, "empty.txt"), "");
        var (code, _, err) = Run("train", "--corpus", corpus.Path, "--steps", "1", "--seq", "64", "--out", run.Path, "--plain");
        Assert.Equal(2, code);
        Assert.Contains(corpus.Path, err);
    }

    [Fact]
    public void A_corpus_shorter_than_one_window_exits_2()
    {
        using var run = new ScratchFolder();
        using var corpus = new ScratchFolder();
        File.WriteAllText(Path.Combine(corpus.Path, "tiny.txt"), "just a few words");
        var (code, _, err) = Run("train", "--corpus", corpus.Path, "--steps", "1", "--seq", "64", "--out", run.Path, "--plain");
        Assert.Equal(2, code);
        Assert.Contains("not one full window", err);
    }

    [Theory]
    [InlineData("anchor-sliding-window", 12)]
    [InlineData("strided-anchor", 2)]
    public void A_declared_mask_trains_by_name(string mask, int steps)
    {
        using var run = new ScratchFolder();
        var (code, output, err) = Run("train", "--mask", mask, "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--seq", "256", "--out", run.Path, "--plain");
        Assert.True(code == 0, err);
        Assert.Contains($"mask {mask}", output);
        var losses = Losses(run.Path);
        Assert.Equal(steps, losses.Length);
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        if (steps >= 12) Assert.True(losses.TakeLast(3).Average() < losses.Take(3).Average(), string.Join(", ", losses));
    }

    [Fact]
    public void An_unknown_mask_lists_the_declared_ones()
    {
        using var run = new ScratchFolder();
        var (code, _, err) = Run("train", "--mask", "no-such-mask", "--steps", "1", "--out", run.Path, "--plain");
        Assert.NotEqual(0, code);
        Assert.Contains("prefix-lm-anchor", err);
    }
}
