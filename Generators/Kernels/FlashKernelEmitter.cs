using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ModelGen.Generators.Emit;

namespace ModelGen.Generators.Kernels;

/// <summary>
/// Writes the flash-attention kernels for one head dimension as straight-line C#: ILGPU does not unroll loops and
/// keeps a value in registers only while it is a named local, so every fragment of a 64×64 tile step is its own
/// local and every <c>mma</c>/<c>ldmatrix</c> of the step is written out. The kernels call
/// <c>ModelGen.Backends.Ilgpu.Kernels.TensorCore</c> (custom PTX intrinsics with CPU emulations).
/// </summary>
/// <remarks>
/// Geometry: 4 warps per group. Forward: a group owns 64 queries (16 per warp) and walks the non-empty 64-key tiles
/// of its query tile; Q fragments stay in registers, K and V pass through shared memory (cp.async, 16-byte chunks
/// swizzled by row so that ldmatrix is free of bank conflicts). Backward: a group owns 64 keys (16 per warp) of one
/// key/value head, walks the group's query heads and the non-empty query tiles of its key tile in halves of 32
/// queries, accumulates dK and dV in registers and adds dQ atomically in fp32.
/// </remarks>
internal static class FlashKernelEmitter
{
    /// <summary>Head dimensions the emitter supports (multiples of 16 whose 16-byte row chunks swizzle by 8).</summary>
    public static bool Supports(int headDim) => headDim == 64 || headDim == 128;

    /// <summary>Queries (forward) and keys (backward) per group; also the tile map's tile size.</summary>
    public const int Tile = 64;
    /// <summary>Threads per group.</summary>
    public const int Threads = 128;

    /// <summary>The source of <c>partial class <paramref name="typeName"/></c> with kernels for <paramref name="headDims"/>.</summary>
    public static string Emit(string @namespace, string typeName, IReadOnlyList<int> headDims)
    {
        var w = CodeWriter.File(@namespace);
        w.Line("using System;");
        w.Line("using ILGPU;");
        w.Line("using ModelGen.Backends.Ilgpu.Kernels;");
        w.Line("using ModelGen.Masks;");
        w.Line("using TC = ModelGen.Backends.Ilgpu.Kernels.TensorCore;");
        w.Line();
        w.Line($"partial class {typeName}");
        using (w.Block())
        {
            w.Line("/// <summary>Tile size of the kernels (queries and keys), which the tile map must use.</summary>");
            w.Line($"public const int Tile = {Tile};");
            w.Line("/// <summary>Threads per group.</summary>");
            w.Line($"public const int Threads = {Threads};");
            w.Line();
            w.Line("/// <summary>Dynamic shared memory of the forward kernel, bytes.</summary>");
            w.Line($"public static int ForwardSharedBytes(int headDim) => headDim switch {{ {string.Join(", ", headDims.Select(d => $"{d} => {I(ForwardShorts(d) * 2)}"))}, _ => 0 }};");
            w.Line("/// <summary>Dynamic shared memory of the backward kernel, bytes.</summary>");
            w.Line($"public static int BackwardSharedBytes(int headDim) => headDim switch {{ {string.Join(", ", headDims.Select(d => $"{d} => {I(BackwardShorts(d) * 2)}"))}, _ => 0 }};");
            w.Line();
            w.Line("/// <summary>Head dimensions with generated flash kernels.</summary>");
            w.Line($"public static int[] HeadDims => new[] {{ {string.Join(", ", headDims)} }};");
            w.Line();
            w.Line("/// <summary>The forward kernel for <paramref name=\"headDim\"/>, or null.</summary>");
            w.Line("public static System.Action<FlashForwardArgs<TMask>>? ForwardKernel<TMask>(int headDim) where TMask : struct, IAttentionMask => headDim switch");
            using (w.Block(";"))
            {
                foreach (int d in headDims) w.Line($"{d} => ForwardD{d}<TMask>,");
                w.Line("_ => null,");
            }
            w.Line();
            w.Line("/// <summary>The backward kernel for <paramref name=\"headDim\"/>, or null.</summary>");
            w.Line("public static System.Action<FlashBackwardArgs<TMask>>? BackwardKernel<TMask>(int headDim) where TMask : struct, IAttentionMask => headDim switch");
            using (w.Block(";"))
            {
                foreach (int d in headDims) w.Line($"{d} => BackwardD{d}<TMask>,");
                w.Line("_ => null,");
            }
            foreach (int d in headDims)
            {
                w.Line();
                Forward(w, d);
                w.Line();
                Backward(w, d);
            }
        }
        return w.ToString();
    }

    private static string I(int v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>cp.async of <paramref name="rows"/> rows of a [tokens, heads·D] tensor into shared memory at <paramref name="smem"/>.</summary>
    private static void LoadTile(CodeWriter w, int d, int rows, string smem, string first, string view, string offset, string stride, string head)
    {
        int chunks = d / 8, rowsPerPass = Threads / chunks;
        for (int i = 0; i < rows / rowsPerPass; i++)
        {
            w.Line($"{{ int tok = {first} + ldRow + {I(i * rowsPerPass)}; int ok = tok < seq ? 16 : 0; " +
                   $"TC.CopyAsync(ref sm, {smem} + ldSm + {I(i * rowsPerPass * d)}, ref {view}, {offset} + (rowTok + (ok != 0 ? tok : 0)) * {stride} + {head} + ldCol * 8, ok); }}");
        }
    }

    private static void Common(CodeWriter w, int d)
    {
        int chunks = d / 8;
        int log = chunks == 16 ? 4 : 3;
        w.Line("var smem = SharedMemory.GetDynamic<ushort>();");
        w.Line("ref ushort sm = ref smem[0];");
        w.Line("int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5, g = lane >> 2, tq = lane & 3, sw = lane & 7;");
        w.Line("int seq = a.Seq;");
        w.Line("long rowTok = (long)row * seq;");
        w.Line($"int ldRow = tid >> {log}, ldCol = tid & {chunks - 1};");
        w.Line($"int ldSm = ldRow * {d} + ((ldCol ^ (ldRow & 7)) << 3);");
        w.Line("var docs = a.Layouts.Row(row);");
    }

    private static void Forward(CodeWriter w, int d)
    {
        int ks = d / 16, nt = d / 8;
        int qs = 0, kS = Tile * d, vS = 2 * Tile * d;
        w.Line($"/// <summary>Flash attention forward, head dim {d}: group (query tile, head, row), 128 threads, {I(ForwardShorts(d) * 2)} bytes of dynamic shared memory.</summary>");
        w.Line($"public static void ForwardD{d}<TMask>(FlashForwardArgs<TMask> a) where TMask : struct, IAttentionMask");
        using var _ = w.Block();
        w.Line("int qt = a.QueryTiles - 1 - Grid.IdxX, h = Grid.IdxY, row = Grid.IdxZ;");
        Common(w, d);
        w.Line("int kvh = h / (a.Heads / a.KvHeads);");
        w.Line($"int q0 = qt * {Tile};");
        w.Line("int tile = row * a.QueryTiles + qt;");
        w.Line("int count = a.Counts[tile];");
        w.Line("long listBase = (long)tile * a.KeyTiles;");
        w.Line($"long qHead = (long)h * {d}, kvHead = (long)kvh * {d};");
        w.Line("ref ushort gq = ref a.Q[0];");
        w.Line("ref ushort gk = ref a.K[0];");
        w.Line("ref ushort gv = ref a.V[0];");
        LoadTile(w, d, Tile, I(qs), "q0", "gq", "a.QOffset", "a.QStride", "qHead");
        w.Line("TC.CommitAsync();");
        w.Line("if (count > 0)");
        using (w.Block())
        {
            w.Line($"int k0 = (a.Lists[listBase] >> 2) * {Tile};");
            LoadTile(w, d, Tile, I(kS), "k0", "gk", "a.KOffset", "a.KStride", "kvHead");
        }
        w.Line("TC.CommitAsync();");
        w.Line("TC.WaitAsync1();");
        w.Line("Group.Barrier();");
        w.Line($"int qRowOff = {qs} + (warp * 16 + (lane & 15)) * {d}, qHalf = lane >> 4;");
        for (int s = 0; s < ks; s++) w.Line($"U4 fq{s} = TC.LoadMatrix(ref sm, qRowOff + ((({2 * s} + qHalf) ^ sw) << 3));");
        for (int b = 0; b < nt; b++) w.Line($"F4 o{b} = default;");
        w.Line("float m0 = float.NegativeInfinity, m1 = float.NegativeInfinity, l0 = 0f, l1 = 0f;");
        w.Line("int qa = q0 + warp * 16 + g, qb = qa + 8;");
        w.Line("int docQa = docs.IndexOf(qa < seq ? qa : seq - 1), docQb = docs.IndexOf(qb < seq ? qb : seq - 1);");
        w.Line($"int kRowOff = {kS} + ((lane & 7) + ((lane >> 4) << 3)) * {d}, kHalf = (lane >> 3) & 1;");
        w.Line($"int vRowOff = {vS} + ((lane & 7) + (((lane >> 3) & 1) << 3)) * {d}, vHalf = lane >> 4;");
        w.Line("float sl = a.ScaleLog2;");
        w.Line("for (int n = 0; n < count; n++)");
        using (w.Block())
        {
            w.Line("int entry = a.Lists[listBase + n];");
            w.Line($"int k0 = (entry >> 2) * {Tile};");
            w.Line($"bool partial = (entry & 3) == (int)TileKind.Partial || k0 + {Tile} > seq;");
            LoadTile(w, d, Tile, I(vS), "k0", "gv", "a.VOffset", "a.VStride", "kvHead");
            w.Line("TC.CommitAsync();");
            w.Line("TC.WaitAsync1();");
            w.Line("Group.Barrier();");
            for (int j = 0; j < 8; j++) w.Line($"F4 s{j} = default;");
            for (int jp = 0; jp < 4; jp++)
                for (int s = 0; s < ks; s++)
                {
                    w.Line($"{{ U4 kb = TC.LoadMatrix(ref sm, kRowOff + {I(jp * 16 * d)} + ((({2 * s} + kHalf) ^ sw) << 3)); " +
                           $"s{2 * jp} = TC.Mma(fq{s}, kb.X, kb.Y, s{2 * jp}); s{2 * jp + 1} = TC.Mma(fq{s}, kb.Z, kb.W, s{2 * jp + 1}); }}");
                }
            w.Line("Group.Barrier();");
            w.Line("if (n + 1 < count)");
            using (w.Block())
            {
                w.Line($"int kn = (a.Lists[listBase + n + 1] >> 2) * {Tile};");
                LoadTile(w, d, Tile, I(kS), "kn", "gk", "a.KOffset", "a.KStride", "kvHead");
            }
            w.Line("TC.CommitAsync();");
            w.Line("if (partial)");
            using (w.Block())
            {
                for (int j = 0; j < 8; j++)
                    for (int e = 0; e < 2; e++)
                    {
                        string lo = e == 0 ? "X" : "Y", hi = e == 0 ? "Z" : "W";
                        w.Line($"{{ int kk = k0 + {8 * j + e} + 2 * tq; bool inK = kk < seq; int dk = inK ? docs.IndexOf(kk) : 0; " +
                               $"if (!(inK && a.Mask.Allows(docs, qa, kk, docQa, dk))) s{j}.{lo} = float.NegativeInfinity; " +
                               $"if (!(inK && a.Mask.Allows(docs, qb, kk, docQb, dk))) s{j}.{hi} = float.NegativeInfinity; }}");
                    }
            }
            w.Line($"float x0 = {Chain("MathF.Max", 8, j => $"MathF.Max(s{j}.X, s{j}.Y)")};");
            w.Line($"float x1 = {Chain("MathF.Max", 8, j => $"MathF.Max(s{j}.Z, s{j}.W)")};");
            w.Line("x0 = MathF.Max(x0, Warp.ShuffleXor(x0, 1)); x0 = MathF.Max(x0, Warp.ShuffleXor(x0, 2));");
            w.Line("x1 = MathF.Max(x1, Warp.ShuffleXor(x1, 1)); x1 = MathF.Max(x1, Warp.ShuffleXor(x1, 2));");
            w.Line("float n0 = MathF.Max(m0, x0 * sl), n1 = MathF.Max(m1, x1 * sl);");
            w.Line("float c0 = n0 == float.NegativeInfinity ? 1f : TC.Exp2(m0 - n0), c1 = n1 == float.NegativeInfinity ? 1f : TC.Exp2(m1 - n1);");
            w.Line("float u0 = n0 == float.NegativeInfinity ? 0f : n0, u1 = n1 == float.NegativeInfinity ? 0f : n1;");
            w.Line("m0 = n0; m1 = n1;");
            for (int j = 0; j < 8; j++)
                w.Line($"s{j}.X = TC.Exp2(s{j}.X * sl - u0); s{j}.Y = TC.Exp2(s{j}.Y * sl - u0); s{j}.Z = TC.Exp2(s{j}.Z * sl - u1); s{j}.W = TC.Exp2(s{j}.W * sl - u1);");
            w.Line($"l0 = l0 * c0 + {Chain("+", 8, j => $"(s{j}.X + s{j}.Y)")};");
            w.Line($"l1 = l1 * c1 + {Chain("+", 8, j => $"(s{j}.Z + s{j}.W)")};");
            for (int b = 0; b < nt; b++) w.Line($"o{b}.X *= c0; o{b}.Y *= c0; o{b}.Z *= c1; o{b}.W *= c1;");
            for (int t = 0; t < 4; t++) w.Line(PackA("p", "s", t));
            w.Line("TC.WaitAsync1();");
            w.Line("Group.Barrier();");
            for (int bp = 0; bp < nt / 2; bp++)
                for (int t = 0; t < 4; t++)
                {
                    w.Line($"{{ U4 vb = TC.LoadMatrixTransposed(ref sm, vRowOff + {I(t * 16 * d)} + ((({2 * bp} + vHalf) ^ sw) << 3)); " +
                           $"o{2 * bp} = TC.Mma(p{t}, vb.X, vb.Y, o{2 * bp}); o{2 * bp + 1} = TC.Mma(p{t}, vb.Z, vb.W, o{2 * bp + 1}); }}");
                }
            w.Line("Group.Barrier();");
        }
        w.Line("l0 += Warp.ShuffleXor(l0, 1); l0 += Warp.ShuffleXor(l0, 2);");
        w.Line("l1 += Warp.ShuffleXor(l1, 1); l1 += Warp.ShuffleXor(l1, 2);");
        w.Line("float i0 = l0 > 0f ? 1f / l0 : 0f, i1 = l1 > 0f ? 1f / l1 : 0f;");
        w.Line("var o32 = a.O.Cast<uint>();");
        w.Line("if (qa < seq)");
        using (w.Block())
        {
            w.Line($"long ob = (a.OOffset + (rowTok + qa) * a.OStride + qHead + 2 * tq) >> 1;");
            for (int b = 0; b < nt; b++) w.Line($"o32[ob + {4 * b}] = TC.Pack(o{b}.X * i0, o{b}.Y * i0);");
            w.Line("if (tq == 0 && a.Lse.Length > 0) a.Lse[((long)row * a.Heads + h) * seq + qa] = l0 > 0f ? (m0 + TC.Log2(l0)) * 0.6931471805599453f : float.NegativeInfinity;");
        }
        w.Line("if (qb < seq)");
        using (w.Block())
        {
            w.Line($"long ob = (a.OOffset + (rowTok + qb) * a.OStride + qHead + 2 * tq) >> 1;");
            for (int b = 0; b < nt; b++) w.Line($"o32[ob + {4 * b}] = TC.Pack(o{b}.Z * i1, o{b}.W * i1);");
            w.Line("if (tq == 0 && a.Lse.Length > 0) a.Lse[((long)row * a.Heads + h) * seq + qb] = l1 > 0f ? (m1 + TC.Log2(l1)) * 0.6931471805599453f : float.NegativeInfinity;");
        }
    }

    /// <summary>Forward shared memory in bf16 elements: Q, K and V tiles.</summary>
    private static int ForwardShorts(int d) => 3 * Tile * d;

    /// <summary>Backward shared memory in bf16 elements: K and V tiles, Q and dO halves, dS^T [64 keys][32 queries].</summary>
    private static int BackwardShorts(int d) => 2 * Tile * d + 2 * HalfQ * d + Tile * HalfQ;

    /// <summary>An A fragment (k-step <paramref name="t"/>) packed from the fp32 accumulators <paramref name="source"/>{2t, 2t+1}.</summary>
    private static string PackA(string name, string source, int t) =>
        $"U4 {name}{t} = new U4 {{ X = TC.Pack({source}{2 * t}.X, {source}{2 * t}.Y), Y = TC.Pack({source}{2 * t}.Z, {source}{2 * t}.W), " +
        $"Z = TC.Pack({source}{2 * t + 1}.X, {source}{2 * t + 1}.Y), W = TC.Pack({source}{2 * t + 1}.Z, {source}{2 * t + 1}.W) }};";

    private static string Chain(string op, int count, Func<int, string> term)
    {
        string result = term(0);
        for (int i = 1; i < count; i++) result = op == "+" ? $"{result} + {term(i)}" : $"{op}({result}, {term(i)})";
        return result;
    }

    private const int HalfQ = 32;

    private static void Backward(CodeWriter w, int d)
    {
        int ks = d / 16, nt = d / 8;
        int kS = 0, vS = Tile * d, qS = 2 * Tile * d, oS = qS + HalfQ * d, dsS = oS + HalfQ * d;
        int total = BackwardShorts(d);
        int dqTiles = nt / 2;
        w.Line($"/// <summary>Flash attention backward, head dim {d}: group (key tile, key/value head, row), 128 threads, {I(total * 2)} bytes of dynamic shared memory.</summary>");
        w.Line($"public static void BackwardD{d}<TMask>(FlashBackwardArgs<TMask> a) where TMask : struct, IAttentionMask");
        using var _ = w.Block();
        w.Line("int kt = Grid.IdxX, kvh = Grid.IdxY, row = Grid.IdxZ;");
        Common(w, d);
        w.Line($"int k0 = kt * {Tile};");
        w.Line("int tile = row * a.KeyTiles + kt;");
        w.Line("int count = a.Counts[tile];");
        w.Line("long listBase = (long)tile * a.QueryTiles;");
        w.Line($"long kvHead = (long)kvh * {d};");
        w.Line("ref ushort gq = ref a.Q[0];");
        w.Line("ref ushort gk = ref a.K[0];");
        w.Line("ref ushort gv = ref a.V[0];");
        w.Line("ref ushort gdo = ref a.DO[0];");
        LoadTile(w, d, Tile, I(kS), "k0", "gk", "a.KOffset", "a.KStride", "kvHead");
        LoadTile(w, d, Tile, I(vS), "k0", "gv", "a.VOffset", "a.VStride", "kvHead");
        w.Line("TC.CommitAsync();");
        for (int b = 0; b < nt; b++) w.Line($"F4 dk{b} = default, dv{b} = default;");
        w.Line("int kw = warp * 16;");
        w.Line("int ka = k0 + kw + g, kb = ka + 8;");
        w.Line("int docKa = docs.IndexOf(ka < seq ? ka : seq - 1), docKb = docs.IndexOf(kb < seq ? kb : seq - 1);");
        w.Line($"int aRowOff = (kw + (lane & 15)) * {d}, aHalf = lane >> 4;");
        w.Line($"int bRowOff = ((lane & 7) + ((lane >> 4) << 3)) * {d}, bHalf = (lane >> 3) & 1;");
        w.Line($"int tRowOff = ((lane & 7) + (((lane >> 3) & 1) << 3)) * {d}, tHalf = lane >> 4;");
        // dQ = dS·K: warp → 16 queries (qw) × D/2 dims (dBase).
        w.Line($"int qw = (warp & 1) * 16, dBase = (warp >> 1) * {d / 2};");
        w.Line($"int dsRow = (lane & 7) + ((lane >> 4) << 3), dsChunk = (qw >> 3) + ((lane >> 3) & 1);");
        w.Line("float sl = a.ScaleLog2;");
        w.Line("int groupSize = a.Heads / a.KvHeads;");
        w.Line("var sm32 = smem.Cast<uint>();");
        w.Line($"long dqStride = (long)a.Heads * {d};");
        w.Line("for (int hi = 0; hi < groupSize; hi++)");
        using (w.Block())
        {
            w.Line("int h = kvh * groupSize + hi;");
            w.Line($"long qHead = (long)h * {d};");
            w.Line("long lseBase = ((long)row * a.Heads + h) * seq;");
            w.Line("for (int n = 0; n < count * 2; n++)");
            using (w.Block())
            {
                w.Line("int entry = a.Lists[listBase + (n >> 1)];");
                w.Line($"int q0 = (entry >> 2) * {Tile} + (n & 1) * {HalfQ};");
                w.Line("if (q0 >= seq) continue;");
                w.Line($"bool partial = (entry & 3) == (int)TileKind.Partial || q0 + {HalfQ} > seq || k0 + {Tile} > seq;");
                LoadTile(w, d, HalfQ, I(qS), "q0", "gq", "a.QOffset", "a.QStride", "qHead");
                LoadTile(w, d, HalfQ, I(oS), "q0", "gdo", "a.DOOffset", "a.DOStride", "qHead");
                w.Line("TC.CommitAsync();");
                w.Line("TC.WaitAsync0();");
                w.Line("Group.Barrier();");
                // S^T = K·Q^T and dP^T = V·dO^T: M = the warp's 16 keys, N = 32 queries, K = D.
                for (int j = 0; j < 4; j++) w.Line($"F4 st{j} = default, dp{j} = default;");
                for (int s = 0; s < ks; s++)
                {
                    w.Line($"{{ int ca = ((({2 * s} + aHalf) ^ sw) << 3), cb = ((({2 * s} + bHalf) ^ sw) << 3);");
                    w.Line($"  U4 kf = TC.LoadMatrix(ref sm, {kS} + aRowOff + ca); U4 vf = TC.LoadMatrix(ref sm, {vS} + aRowOff + ca);");
                    for (int jp = 0; jp < 2; jp++)
                    {
                        w.Line($"  {{ U4 qf = TC.LoadMatrix(ref sm, {qS + jp * 16 * d} + bRowOff + cb); st{2 * jp} = TC.Mma(kf, qf.X, qf.Y, st{2 * jp}); st{2 * jp + 1} = TC.Mma(kf, qf.Z, qf.W, st{2 * jp + 1}); }}");
                        w.Line($"  {{ U4 of = TC.LoadMatrix(ref sm, {oS + jp * 16 * d} + bRowOff + cb); dp{2 * jp} = TC.Mma(vf, of.X, of.Y, dp{2 * jp}); dp{2 * jp + 1} = TC.Mma(vf, of.Z, of.W, dp{2 * jp + 1}); }}");
                    }
                    w.Line("}");
                }
                // P^T = exp2(S^T·scale·log2 e − lse₂(q)), dS^T = P^T ∘ (dP^T − Δ(q)); queries 8j + 2tq + e.
                for (int j = 0; j < 4; j++)
                    for (int e = 0; e < 2; e++)
                    {
                        string lo = e == 0 ? "X" : "Y", hi = e == 0 ? "Z" : "W";
                        w.Line($"{{ int q = q0 + {8 * j + e} + 2 * tq; bool inQ = q < seq; float lse = inQ ? a.Lse[lseBase + q] * 1.4426950408889634f : float.PositiveInfinity; float dl = inQ ? a.Delta[lseBase + q] : 0f;");
                        w.Line($"  float pa = TC.Exp2(st{j}.{lo} * sl - lse), pb = TC.Exp2(st{j}.{hi} * sl - lse);");
                        w.Line($"  if (partial) {{ int dq = inQ ? docs.IndexOf(q) : 0; if (!(inQ && ka < seq && a.Mask.Allows(docs, q, ka, dq, docKa))) pa = 0f; if (!(inQ && kb < seq && a.Mask.Allows(docs, q, kb, dq, docKb))) pb = 0f; }}");
                        w.Line($"  st{j}.{lo} = pa; st{j}.{hi} = pb; dp{j}.{lo} = pa * (dp{j}.{lo} - dl); dp{j}.{hi} = pb * (dp{j}.{hi} - dl); }}");
                    }
                for (int t = 0; t < 2; t++)
                {
                    w.Line(PackA("pt", "st", t));
                    w.Line(PackA("ds", "dp", t));
                }
                // dS^T to shared memory [64 keys][32 queries], 16-byte chunks swizzled by (key / 2) % 4.
                for (int t = 0; t < 2; t++)
                {
                    // X: key row g, queries of n-tile 2t; Y: row g + 8, 2t; Z: row g, 2t + 1; W: row g + 8, 2t + 1.
                    foreach (var (reg, r8, dj) in new[] { ("X", 0, 0), ("Y", 1, 0), ("Z", 0, 1), ("W", 1, 1) })
                    {
                        int j = 2 * t + dj;
                        string key = r8 == 0 ? "(kw + g)" : "(kw + g + 8)";
                        w.Line($"sm32[({dsS} + {key} * {HalfQ} + (({j} ^ (({key} >> 1) & 3)) << 3) + 2 * tq) >> 1] = ds{t}.{reg};");
                    }
                }
                // dV += P^T·dO and dK += dS^T·Q: M = 16 keys, N = D, K = 32 queries.
                for (int bp = 0; bp < nt / 2; bp++)
                    for (int t = 0; t < 2; t++)
                    {
                        w.Line($"{{ int c = ((({2 * bp} + tHalf) ^ sw) << 3);");
                        w.Line($"  U4 of = TC.LoadMatrixTransposed(ref sm, {oS + t * 16 * d} + tRowOff + c); dv{2 * bp} = TC.Mma(pt{t}, of.X, of.Y, dv{2 * bp}); dv{2 * bp + 1} = TC.Mma(pt{t}, of.Z, of.W, dv{2 * bp + 1});");
                        w.Line($"  U4 qf = TC.LoadMatrixTransposed(ref sm, {qS + t * 16 * d} + tRowOff + c); dk{2 * bp} = TC.Mma(ds{t}, qf.X, qf.Y, dk{2 * bp}); dk{2 * bp + 1} = TC.Mma(ds{t}, qf.Z, qf.W, dk{2 * bp + 1}); }}");
                    }
                w.Line("Group.Barrier();");
                // dQ += dS·K: M = 16 queries (qw), N = D/2 (dBase), K = 64 keys.
                for (int b = 0; b < dqTiles; b++) w.Line($"F4 dq{b} = default;");
                for (int t = 0; t < 4; t++)
                {
                    w.Line($"{{ int key = {16 * t} + dsRow; U4 af = TC.LoadMatrixTransposed(ref sm, {dsS} + key * {HalfQ} + ((dsChunk ^ ((key >> 1) & 3)) << 3));");
                    for (int bp = 0; bp < dqTiles / 2; bp++)
                        w.Line($"  {{ U4 kf = TC.LoadMatrixTransposed(ref sm, {kS + t * 16 * d} + tRowOff + ((((dBase >> 3) + {2 * bp} + tHalf) ^ sw) << 3)); dq{2 * bp} = TC.Mma(af, kf.X, kf.Y, dq{2 * bp}); dq{2 * bp + 1} = TC.Mma(af, kf.Z, kf.W, dq{2 * bp + 1}); }}");
                    w.Line("}");
                }
                w.Line("{ int qa = q0 + qw + g, qb = qa + 8;");
                w.Line("  if (qa < seq) { long o = (rowTok + qa) * dqStride + qHead + dBase + 2 * tq;");
                for (int b = 0; b < dqTiles; b++) w.Line($"    Atomic.Add(ref a.DQ[o + {8 * b}], dq{b}.X); Atomic.Add(ref a.DQ[o + {8 * b + 1}], dq{b}.Y);");
                w.Line("  }");
                w.Line("  if (qb < seq) { long o = (rowTok + qb) * dqStride + qHead + dBase + 2 * tq;");
                for (int b = 0; b < dqTiles; b++) w.Line($"    Atomic.Add(ref a.DQ[o + {8 * b}], dq{b}.Z); Atomic.Add(ref a.DQ[o + {8 * b + 1}], dq{b}.W);");
                w.Line("  }");
                w.Line("}");
                w.Line("Group.Barrier();");
            }
        }
        w.Line("var dk32 = a.DK.Cast<uint>();");
        w.Line("var dv32 = a.DV.Cast<uint>();");
        w.Line("float scale = a.Scale;");
        w.Line($"long kvStride = (long)a.KvHeads * {d};");
        w.Line("if (ka < seq)");
        using (w.Block())
        {
            w.Line("long o = ((rowTok + ka) * kvStride + kvHead + 2 * tq) >> 1;");
            for (int b = 0; b < nt; b++) w.Line($"dk32[o + {4 * b}] = TC.Pack(dk{b}.X * scale, dk{b}.Y * scale); dv32[o + {4 * b}] = TC.Pack(dv{b}.X, dv{b}.Y);");
        }
        w.Line("if (kb < seq)");
        using (w.Block())
        {
            w.Line("long o = ((rowTok + kb) * kvStride + kvHead + 2 * tq) >> 1;");
            for (int b = 0; b < nt; b++) w.Line($"dk32[o + {4 * b}] = TC.Pack(dk{b}.Z * scale, dk{b}.W * scale); dv32[o + {4 * b}] = TC.Pack(dv{b}.Z, dv{b}.W);");
        }
    }
}
