using ModelGen.Build;
using TorchSharp;

namespace ModelGen.Tests.Build;

/// <summary>The build's patch of TorchSharp's native library (see build/ElfVersionNeedPatcher.cs).</summary>
public class TorchSharpLoadTests
{
    private static string OutputLibrary => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

    [Fact]
    public void TorchSharp_loads_and_computes()
    {
        using var a = torch.arange(1, 5, dtype: torch.float32);
        Assert.Equal(10f, a.sum().item<float>());
    }

    [Fact]
    public void Build_output_marks_the_GLIBCXX_3_4_32_need_weak()
    {
        if (!OperatingSystem.IsLinux()) return; // the native library only exists on Linux outputs
        Assert.True(File.Exists(OutputLibrary), $"expected {OutputLibrary} in the test output");
        ushort? flags = ElfVersionNeedPatcher.ReadFlags(OutputLibrary, "GLIBCXX_3.4.32");
        Assert.NotNull(flags);
        Assert.Equal(ElfVersionNeedPatcher.WeakFlag, (ushort)(flags!.Value & ElfVersionNeedPatcher.WeakFlag));
    }

    [Fact]
    public void Patcher_marks_a_strong_need_weak_once_and_leaves_other_needs_alone()
    {
        if (!OperatingSystem.IsLinux()) return;
        string copy = Path.Combine(Path.GetTempPath(), $"modelgen-elf-{Guid.NewGuid():N}.so");
        File.Copy(OutputLibrary, copy);
        try
        {
            // Undo the build's patch in the copy, so the test sees a library as NuGet ships it.
            ClearWeak(copy, "GLIBCXX_3.4.32");
            ushort? before30 = ElfVersionNeedPatcher.ReadFlags(copy, "GLIBCXX_3.4.30");
            Assert.Equal(0, ElfVersionNeedPatcher.ReadFlags(copy, "GLIBCXX_3.4.32")!.Value & ElfVersionNeedPatcher.WeakFlag);

            Assert.Equal(ElfPatchResult.Patched, ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_3.4.32"));
            Assert.Equal(ElfPatchResult.AlreadyWeak, ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_3.4.32"));
            Assert.Equal(ElfPatchResult.NotNeeded, ElfVersionNeedPatcher.MarkWeak(copy, "GLIBCXX_9.9.99"));
            Assert.Equal(before30, ElfVersionNeedPatcher.ReadFlags(copy, "GLIBCXX_3.4.30"));
            Assert.Equal(new FileInfo(OutputLibrary).Length, new FileInfo(copy).Length);
        }
        finally { File.Delete(copy); }
    }

    [Fact]
    public void Patcher_rejects_a_file_that_is_not_ELF_naming_it()
    {
        string bogus = Path.Combine(Path.GetTempPath(), $"modelgen-notelf-{Guid.NewGuid():N}.so");
        File.WriteAllText(bogus, "this is not a shared library, just text long enough to have a header........");
        try
        {
            var e = Assert.Throws<InvalidDataException>(() => ElfVersionNeedPatcher.MarkWeak(bogus, "GLIBCXX_3.4.32"));
            Assert.Contains(bogus, e.Message);
        }
        finally { File.Delete(bogus); }
    }

    private static void ClearWeak(string path, string version)
    {
        long offset = ElfVersionNeedPatcher.FlagsOffset(path, version)!.Value;
        using var file = File.Open(path, FileMode.Open, FileAccess.ReadWrite);
        file.Position = offset;
        int low = file.ReadByte();
        file.Position = offset;
        file.WriteByte((byte)(low & ~ElfVersionNeedPatcher.WeakFlag));
    }
}
