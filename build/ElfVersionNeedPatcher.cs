// Marks one symbol-version requirement of an ELF64 shared library as weak (VER_FLG_WEAK in its
// .gnu.version_r auxiliary entry), so the dynamic loader accepts a libstdc++ that lacks that version.
//
// Why: TorchSharp 0.107's libLibTorchSharp.so declares a need for GLIBCXX_3.4.32, only for the symbol
// std::ios_base_library_init, which it never relocates. Debian 12's libstdc++ stops at GLIBCXX_3.4.30,
// so without this the library fails to load. With the entry weak, ld.so only notes the missing version.
//
// This file is compiled twice: as an MSBuild inline task (build/TorchSharpNative.targets) and into the
// tests (with ELF_PATCHER_NO_MSBUILD defined), so the build step and its test share one implementation.
#nullable enable
using System;
using System.IO;
using System.Text;

namespace ModelGen.Build
{
    /// <summary>Outcome of <see cref="ElfVersionNeedPatcher.MarkWeak"/>.</summary>
    public enum ElfPatchResult
    {
        /// <summary>The entry was strong and is now weak.</summary>
        Patched,
        /// <summary>The entry was already weak; the file was not written.</summary>
        AlreadyWeak,
        /// <summary>The file declares no need for that version; nothing to do.</summary>
        NotNeeded,
    }

    /// <summary>Reads and edits the version-need table (.gnu.version_r) of a little-endian ELF64 file.</summary>
    public static class ElfVersionNeedPatcher
    {
        /// <summary>VER_FLG_WEAK from elf.h.</summary>
        public const ushort WeakFlag = 0x2;
        private const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>Marks the need for <paramref name="version"/> weak, in place.</summary>
        public static ElfPatchResult MarkWeak(string path, string version)
        {
            byte[] image = File.ReadAllBytes(path);
            long? flagsOffset = FindAuxFlagsOffset(image, version, path);
            if (flagsOffset is null) return ElfPatchResult.NotNeeded;
            ushort flags = BitConverter.ToUInt16(image, (int)flagsOffset.Value);
            if ((flags & WeakFlag) != 0) return ElfPatchResult.AlreadyWeak;
            flags |= WeakFlag;
            // Write through a temporary file and rename, so an interrupted build never leaves half a library.
            string temp = path + ".patching";
            image[flagsOffset.Value] = (byte)(flags & 0xff);
            image[flagsOffset.Value + 1] = (byte)(flags >> 8);
            File.WriteAllBytes(temp, image);
            File.Copy(temp, path, overwrite: true);
            File.Delete(temp);
            return ElfPatchResult.Patched;
        }

        /// <summary>The vna_flags of the need for <paramref name="version"/>, or null when there is none.</summary>
        public static ushort? ReadFlags(string path, string version)
        {
            byte[] image = File.ReadAllBytes(path);
            long? offset = FindAuxFlagsOffset(image, version, path);
            return offset is null ? null : BitConverter.ToUInt16(image, (int)offset.Value);
        }

        /// <summary>File offset of the vna_flags field of the need for <paramref name="version"/>, or null.</summary>
        public static long? FlagsOffset(string path, string version) =>
            FindAuxFlagsOffset(File.ReadAllBytes(path), version, path);

        private static long? FindAuxFlagsOffset(byte[] image, string version, string path)
        {
            if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F')
                throw new InvalidDataException($"{path}: not an ELF file");
            if (image[4] != 2 || image[5] != 1)
                throw new InvalidDataException($"{path}: only little-endian ELF64 is supported (class {image[4]}, data {image[5]})");

            long shoff = (long)U64(image, 0x28, path);
            int shentsize = U16(image, 0x3a, path);
            int shnum = U16(image, 0x3c, path);
            for (int i = 0; i < shnum; i++)
            {
                long sh = shoff + (long)i * shentsize;
                if (U32(image, sh + 4, path) != ShtGnuVerneed) continue;
                long offset = (long)U64(image, sh + 0x18, path);
                uint link = U32(image, sh + 0x28, path);
                uint count = U32(image, sh + 0x2c, path); // sh_info: number of Verneed entries
                long strtab = (long)U64(image, shoff + (long)link * shentsize + 0x18, path);

                long need = offset;
                for (uint n = 0; n < count; n++)
                {
                    int auxCount = U16(image, need + 2, path);
                    long aux = need + U32(image, need + 8, path);
                    for (int a = 0; a < auxCount; a++)
                    {
                        string name = CString(image, strtab + U32(image, aux + 8, path), path);
                        if (name == version) return aux + 4;
                        uint nextAux = U32(image, aux + 12, path);
                        if (nextAux == 0) break;
                        aux += nextAux;
                    }
                    uint nextNeed = U32(image, need + 12, path);
                    if (nextNeed == 0) break;
                    need += nextNeed;
                }
            }
            return null;
        }

        private static void Check(byte[] image, long at, int size, string path)
        {
            if (at < 0 || at + size > image.Length)
                throw new InvalidDataException($"{path}: truncated ELF (offset {at} beyond {image.Length} bytes)");
        }

        private static ushort U16(byte[] b, long at, string path) { Check(b, at, 2, path); return BitConverter.ToUInt16(b, (int)at); }
        private static uint U32(byte[] b, long at, string path) { Check(b, at, 4, path); return BitConverter.ToUInt32(b, (int)at); }
        private static ulong U64(byte[] b, long at, string path) { Check(b, at, 8, path); return BitConverter.ToUInt64(b, (int)at); }

        private static string CString(byte[] b, long at, string path)
        {
            Check(b, at, 1, path);
            long end = at;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)at, (int)(end - at));
        }
    }

#if !ELF_PATCHER_NO_MSBUILD
    /// <summary>MSBuild task: marks <see cref="Version"/> weak in each of <see cref="Files"/> that exists.</summary>
    public sealed class MarkElfVersionNeedWeak : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();
        [Microsoft.Build.Framework.Required] public string Version { get; set; } = "";

        public override bool Execute()
        {
            foreach (var item in Files)
            {
                string file = item.ItemSpec;
                if (!File.Exists(file)) continue;
                try
                {
                    var result = ElfVersionNeedPatcher.MarkWeak(file, Version);
                    if (result == ElfPatchResult.Patched)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High, $"ModelGen: marked {Version} weak in {file}");
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
                {
                    Log.LogError($"ModelGen: could not patch {file}: {e.Message}");
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
