using System.Diagnostics;
using ModelGen.Checkpoints;
using ModelGen.Training;

namespace ModelGen.Tests.Training;

/// <summary>A real <c>modelgen train</c> process killed at arbitrary moments, most of them inside a checkpoint write.</summary>
public class CrashTests
{
    private static Process StartTraining(string outDir, bool resume)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "modelgen.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { dll, "train", "--model", "TinyLlama", "--steps", "400", "--seq", "64", "--save-every", "1", "--plain" })
            info.ArgumentList.Add(a);
        info.ArgumentList.Add(resume ? "--resume" : "--out");
        info.ArgumentList.Add(outDir);
        var p = Process.Start(info)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static int StepsLogged(string outDir)
    {
        string metrics = Path.Combine(outDir, "metrics.jsonl");
        try { return File.Exists(metrics) ? File.ReadAllLines(metrics).Length : 0; }
        catch (IOException) { return 0; }
    }

    [Fact]
    public void Killing_training_mid_checkpoint_never_corrupts_the_previous_checkpoint()
    {
        using var folder = new ScratchFolder();
        var random = new Random(17);
        int lastStep = 0;
        for (int kill = 0; kill < 3; kill++)
        {
            using var process = StartTraining(folder.Path, resume: kill > 0);
            var deadline = Stopwatch.StartNew();
            while (StepsLogged(folder.Path) < lastStep + 2 && deadline.Elapsed < TimeSpan.FromSeconds(120) && !process.HasExited)
                Thread.Sleep(20);
            Assert.False(process.HasExited, $"training exited early with code {(process.HasExited ? process.ExitCode : 0)}");
            Thread.Sleep(random.Next(0, 400)); // each step saves ~190 MB, so most kills land inside a save
            process.Kill(entireProcessTree: true);
            process.WaitForExit();

            string checkpoint = TrainingCheckpoint.Locate(folder.Path) ?? throw new Xunit.Sdk.XunitException("no checkpoint after the kill");
            var state = TrainingCheckpoint.ReadState(checkpoint);
            Assert.True(state.Step >= lastStep, $"checkpoint went back from step {lastStep} to {state.Step}");
            lastStep = state.Step;
            using var reader = CheckpointReader.Open(checkpoint);
            foreach (string name in reader.Names)
                Assert.All(reader.ReadFloat32(name), v => Assert.True(float.IsFinite(v)));
            Assert.Equal(ModelGen.Models.TinyLlama.Declared.Hidden, ModelGen.Models.Llama.FromHuggingFace(Path.Combine(checkpoint, "config.json")).Hidden);
        }
        Assert.True(lastStep >= 1);
    }
}
