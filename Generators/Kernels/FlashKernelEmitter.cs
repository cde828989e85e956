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
/// Forward: a group owns 128 queries at head dim 128 (8 warps, two tiles of the tile map) or 64 at head dim 64 (4 warps),
/// 16 per warp, and walks the 64-key tiles that reach them; Q fragments stay in registers, K and V pass through two
/// shared-memory buffers (cp.async, 16-byte chunks swizzled by row so that ldmatrix is free of bank conflicts; the next
/// tile loads while this one is computed), each loaded once for all the group's warps. Partial tiles test keys against
/// each query's spans (<c>IAttentionMask.Spans</c>) or, for masks without spans, the predicate.
/// Backward: a group of 8 warps owns 128 keys (16 per warp) of one key/value head, walks the group's query heads and
/// the non-empty query tiles of its key block in halves of 32 queries (the next half's Q, dO, LSE, Δ and spans load
/// while this one is used), accumulates dK and dV in registers and adds dQ atomically in fp32. Two dS^T buffers leave
/// two barriers per step.
/// </remarks>
internal static class FlashKernelEmitter
{
    /// <summary>Head dimensions the emitter supports (multiples of 16 whose 16-byte row chunks swizzle by 8).</summary>
    public static bool Supports(int headDim) => headDim == 64 || headDim == 128;

    /// <summary>The tile map's tile size: keys per forward step, queries per backward list entry.</summary>
    public const int Tile = 64;
    /// <summary>
    /// Queries per forward group (adjacent query tiles of the tile map), a warp per 16: K and V tiles loaded once serve
    /// them all. Measured on the H200: 128 queries run head dim 128 faster (271 against 245 TFLOP/s causal at 16K),
    /// 64 run head dim 64 faster (236 against 200): its smaller kernels fit more groups per SM.
    /// </summary>
    public static int FwdQ(int d) => d >= 128 ? 2 * Tile : Tile;

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
            w.Line("/// <summary>Queries per group of the forward kernel for <paramref name=\"headDim\"/> (adjacent query tiles; 2 threads each).</summary>");
            w.Line($"public static int ForwardQueries(int headDim) => headDim switch {{ {string.Join(", ", headDims.Select(d => $"{d} => {FwdQ(d)}"))}, _ => 0 }};");
            w.Line("/// <summary>Keys per group of the backward kernels (adjacent tiles of the tile map).</summary>");
            w.Line($"public const int BackwardKeys = {BwdKeys};");
            w.Line("/// <summary>Threads per group of the backward kernels.</summary>");
            w.Line($"public const int BackwardThreads = {BwdThreads};");
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
    private static void LoadTile(CodeWriter w, int d, int rows, string smem, string first, string view, string offset, string stride, string head, int threads)
    {
        int chunks = d / 8, rowsPerPass = threads / chunks;
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
        // Shared memory: Q, then two buffers of (K, V): the next tile's K and V load while this tile is computed.
        int fq = FwdQ(d), th = 2 * fq;
        int qs = 0, kS = fq * d, bufShorts = 2 * Tile * d;
        w.Line($"/// <summary>Flash attention forward, head dim {d}: group ({fq} queries, head, row), {th} threads, {I(ForwardShorts(d) * 2)} bytes of dynamic shared memory.</summary>");
        w.Line($"public static void ForwardD{d}<TMask>(FlashForwardArgs<TMask> a) where TMask : struct, IAttentionMask");
        using var _ = w.Block();
        // Heads vary fastest and query blocks run from the last: the longest lists (causal) start first, so no long
        // group is left to run alone at the end.
        w.Line("int qt = a.QueryBlocks - 1 - Grid.IdxY, h = Grid.IdxX, row = Grid.IdxZ;");
        Common(w, d);
        w.Line("int kvh = h / (a.Heads / a.KvHeads);");
        w.Line($"int q0 = qt * {fq};");
        w.Line("int tile = row * a.QueryBlocks + qt;");
        w.Line("int count = a.Counts[tile];");
        w.Line("long listBase = (long)tile * a.KeyTiles;");
        w.Line($"long qHead = (long)h * {d}, kvHead = (long)kvh * {d};");
        w.Line("ref ushort gq = ref a.Q[0];");
        w.Line("ref ushort gk = ref a.K[0];");
        w.Line("ref ushort gv = ref a.V[0];");
        LoadTile(w, d, fq, I(qs), "q0", "gq", "a.QOffset", "a.QStride", "qHead", th);
        w.Line("TC.CommitAsync();");
        w.Line("if (count > 0)");
        using (w.Block())
        {
            w.Line($"int k0 = (a.Lists[listBase] >> 2) * {Tile};");
            LoadTile(w, d, Tile, I(kS), "k0", "gk", "a.KOffset", "a.KStride", "kvHead", th);
            LoadTile(w, d, Tile, I(kS + Tile * d), "k0", "gv", "a.VOffset", "a.VStride", "kvHead", th);
        }
        w.Line("TC.CommitAsync();");
        // The allowed key spans of the group's queries (when the mask has them): partial tiles compare against them.
        w.Line("var sp32 = smem.Cast<int>();");
        w.Line($"int spanS = {ForwardShorts(d) / 2 - 4 * fq};");
        w.Line($"int sq = q0 + (tid & {fq - 1}); if (sq >= seq) sq = seq - 1;");
        w.Line("var rs = a.Mask.Spans(docs, sq, docs.IndexOf(sq));");
        w.Line("bool exact = rs.Exact;");
        w.Line($"if (tid < {fq}) {{ sp32[spanS + tid] = rs.Lo0; sp32[spanS + {fq} + tid] = rs.Hi0; sp32[spanS + {2 * fq} + tid] = rs.Lo1; sp32[spanS + {3 * fq} + tid] = rs.Hi1; }}");
        w.Line("TC.WaitAsync1();");
        w.Line("Group.Barrier();");
        w.Line($"int qRowOff = {qs} + (warp * 16 + (lane & 15)) * {d}, qHalf = lane >> 4;");
        Swizzles(w, "cq", "qHalf");
        for (int s = 0; s < ks; s++) w.Line($"U4 fq{s} = TC.LoadMatrix(ref sm, qRowOff + {Chunk("cq", s)});");
        for (int b = 0; b < nt; b++) w.Line($"F4 o{b} = default;");
        w.Line("float m0 = float.NegativeInfinity, m1 = float.NegativeInfinity, l0 = 0f, l1 = 0f;");
        w.Line("int qa = q0 + warp * 16 + g, qb = qa + 8;");
        w.Line("int docQa = docs.IndexOf(qa < seq ? qa : seq - 1), docQb = docs.IndexOf(qb < seq ? qb : seq - 1);");
        w.Line($"int kLane = ((lane & 7) + ((lane >> 4) << 3)) * {d}, kHalf = (lane >> 3) & 1;");
        w.Line($"int vLane = {Tile * d} + ((lane & 7) + (((lane >> 3) & 1) << 3)) * {d}, vHalf = lane >> 4;");
        Swizzles(w, "ck", "kHalf");
        Swizzles(w, "cv", "vHalf");
        w.Line("float sl = a.ScaleLog2;");
        w.Line("for (int n = 0; n < count; n++)");
        using (w.Block())
        {
            w.Line("int entry = a.Lists[listBase + n];");
            w.Line($"int k0 = (entry >> 2) * {Tile};");
            w.Line($"bool partial = (entry & 3) == (int)TileKind.Partial || k0 + {Tile} > seq;");
            w.Line($"int buf = {kS} + (n & 1) * {bufShorts}, kRowOff = buf + kLane, vRowOff = buf + vLane;");
            w.Line("if (n + 1 < count)");
            using (w.Block())
            {
                w.Line($"int kn = (a.Lists[listBase + n + 1] >> 2) * {Tile}, next = {kS} + ((n + 1) & 1) * {bufShorts};");
                LoadTile(w, d, Tile, "next", "kn", "gk", "a.KOffset", "a.KStride", "kvHead", th);
                LoadTile(w, d, Tile, $"next + {Tile * d}", "kn", "gv", "a.VOffset", "a.VStride", "kvHead", th);
            }
            w.Line("TC.CommitAsync();");
            w.Line("TC.WaitAsync1();");
            w.Line("Group.Barrier();");
            for (int j = 0; j < 8; j++) w.Line($"F4 s{j} = default;");
            for (int jp = 0; jp < 4; jp++)
                for (int s = 0; s < ks; s++)
                {
                    w.Line($"{{ U4 kb = TC.LoadMatrix(ref sm, kRowOff + {I(jp * 16 * d)} + {Chunk("ck", s)}); " +
                           $"s{2 * jp} = TC.Mma(fq{s}, kb.X, kb.Y, s{2 * jp}); s{2 * jp + 1} = TC.Mma(fq{s}, kb.Z, kb.W, s{2 * jp + 1}); }}");
                }
            w.Line("if (partial && exact)");
            using (w.Block())
            {
                w.Line("int ra = warp * 16 + g, rb = ra + 8;");
                w.Line($"int aLo0 = sp32[spanS + ra], aHi0 = sp32[spanS + {fq} + ra], aLo1 = sp32[spanS + {2 * fq} + ra], aHi1 = sp32[spanS + {3 * fq} + ra];");
                w.Line($"int bLo0 = sp32[spanS + rb], bHi0 = sp32[spanS + {fq} + rb], bLo1 = sp32[spanS + {2 * fq} + rb], bHi1 = sp32[spanS + {3 * fq} + rb];");
                for (int j = 0; j < 8; j++)
                    for (int e = 0; e < 2; e++)
                    {
                        string lo = e == 0 ? "X" : "Y", hi = e == 0 ? "Z" : "W";
                        w.Line($"{{ int kk = k0 + {8 * j + e} + 2 * tq; bool inK = kk < seq; " +
                               $"s{j}.{lo} = inK & RowSpans.Contains(kk, aLo0, aHi0, aLo1, aHi1) ? s{j}.{lo} : float.NegativeInfinity; " +
                               $"s{j}.{hi} = inK & RowSpans.Contains(kk, bLo0, bHi0, bLo1, bHi1) ? s{j}.{hi} : float.NegativeInfinity; }}");
                    }
            }
            w.Line("else if (partial)");
            using (w.Block())
            {
                // A mask without spans: the keys' documents first, all loads unconditional (clamped), so that their
                // latencies overlap instead of one load per predicate.
                for (int j = 0; j < 8; j++)
                    for (int e = 0; e < 2; e++)
                        w.Line($"int kk{j}{e} = k0 + {8 * j + e} + 2 * tq; int dk{j}{e} = docs.IndexOf(kk{j}{e} < seq ? kk{j}{e} : seq - 1);");
                for (int j = 0; j < 8; j++)
                    for (int e = 0; e < 2; e++)
                    {
                        string lo = e == 0 ? "X" : "Y", hi = e == 0 ? "Z" : "W";
                        w.Line($"{{ bool inK = kk{j}{e} < seq; " +
                               $"if (!(inK && a.Mask.Allows(docs, qa, kk{j}{e}, docQa, dk{j}{e}))) s{j}.{lo} = float.NegativeInfinity; " +
                               $"if (!(inK && a.Mask.Allows(docs, qb, kk{j}{e}, docQb, dk{j}{e}))) s{j}.{hi} = float.NegativeInfinity; }}");
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
            for (int bp = 0; bp < nt / 2; bp++)
                for (int t = 0; t < 4; t++)
                {
                    w.Line($"{{ U4 vb = TC.LoadMatrixTransposed(ref sm, vRowOff + {I(t * 16 * d)} + {Chunk("cv", bp)}); " +
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

    /// <summary>Forward shared memory in bf16 elements: the group's Q rows, two buffers of K and V tiles, the queries' key spans (4 ints each).</summary>
    private static int ForwardShorts(int d) => FwdQ(d) * d + 4 * Tile * d + 2 * 4 * FwdQ(d);

    /// <summary>
    /// Backward shared memory in bf16 elements: K and V blocks, two buffers of Q and dO halves (the next half is
    /// prefetched while the current one is used), two buffers of dS^T [keys][32 queries] (a step writes its dS^T while
    /// slower warps still read the last one for dQ, so no barrier ends a step).
    /// </summary>
    private static int BackwardShorts(int d) => 2 * BwdKeys * d + 2 * 2 * HalfQ * d + 2 * BwdKeys * HalfQ + 2 * StepValues * 2;

    /// <summary>Per-step values staged in shared memory (two buffers): LSE, Δ and the four key-span bounds of each of the 32 queries.</summary>
    private const int StepValues = 6 * HalfQ;

    /// <summary>An A fragment (k-step <paramref name="t"/>) packed from the fp32 accumulators <paramref name="source"/>{2t, 2t+1}.</summary>
    private static string PackA(string name, string source, int t) =>
        $"U4 {name}{t} = new U4 {{ X = TC.Pack({source}{2 * t}.X, {source}{2 * t}.Y), Y = TC.Pack({source}{2 * t}.Z, {source}{2 * t}.W), " +
        $"Z = TC.Pack({source}{2 * t + 1}.X, {source}{2 * t + 1}.Y), W = TC.Pack({source}{2 * t + 1}.Z, {source}{2 * t + 1}.W) }};";

    /// <summary>
    /// Locals <paramref name="name"/>0..3: the swizzled element offsets <c>((2j + half) ^ sw) · 8</c> of the 16-byte chunks
    /// 2j + half, j = 0..3 (<paramref name="half"/> is 0 or 1, so this is <c>(2j ^ (half ^ sw)) · 8</c>). Chunks 8 and
    /// above add 64 (the swizzle touches the low three bits), so every fragment address is a lane offset plus a constant.
    /// </summary>
    private static void Swizzles(CodeWriter w, string name, string half) =>
        w.Line($"int {name}x = {half} ^ sw, {name}0 = {name}x << 3, {name}1 = ({name}x ^ 2) << 3, {name}2 = ({name}x ^ 4) << 3, {name}3 = ({name}x ^ 6) << 3;");

    /// <summary>The element offset of chunk pair <paramref name="s"/> (chunk 2s + half) from <see cref="Swizzles"/>' locals.</summary>
    private static string Chunk(string name, int s) => s < 4 ? $"{name}{s}" : $"({name}{s & 3} + {64 * (s >> 2)})";

    private static string Chain(string op, int count, Func<int, string> term)
    {
        string result = term(0);
        for (int i = 1; i < count; i++) result = op == "+" ? $"{result} + {term(i)}" : $"{op}({result}, {term(i)})";
        return result;
    }

    private const int HalfQ = 32;

    /// <summary>Keys per backward group: two tiles, so that dQ's fp32 atomics cover 128 keys at once (half as many as 64).</summary>
    private const int BwdKeys = 2 * Tile;

    /// <summary>Threads per backward group: 8 warps of 16 keys.</summary>
    private const int BwdThreads = 256;

    /// <summary>Writes the step <paramref name="step"/>'s head and first query into locals suffixed <paramref name="suffix"/>.</summary>
    private static void StepOf(CodeWriter w, int d, string step, string suffix)
    {
        w.Line($"int hi{suffix} = {step} / perHead, local{suffix} = {step} - hi{suffix} * perHead;");
        w.Line($"int entry{suffix} = a.Lists[listBase + (local{suffix} >> 1)];");
        w.Line($"int q0{suffix} = (entry{suffix} >> 2) * {Tile} + (local{suffix} & 1) * {HalfQ};");
        w.Line($"long qHead{suffix} = (long)(kvh * groupSize + hi{suffix}) * {d};");
    }

    private static void Backward(CodeWriter w, int d)
    {
        int ks = d / 16, nt = d / 8;
        int kS = 0, vS = BwdKeys * d, bufS = 2 * BwdKeys * d, bufShorts = 2 * HalfQ * d, dsS = bufS + 2 * bufShorts, dsShorts = BwdKeys * HalfQ;
        // 32-bit view: the staged LSE (log2), Δ and key spans, two buffers of StepValues.
        int valS = (dsS + 2 * dsShorts) / 2;
        int total = BackwardShorts(d);
        int dqTiles = d / 4 / 8;
        w.Line($"/// <summary>Flash attention backward, head dim {d}: group ({BwdKeys} keys, key/value head, row), {BwdThreads} threads, {I(total * 2)} bytes of dynamic shared memory.</summary>");
        w.Line($"public static void BackwardD{d}<TMask>(FlashBackwardArgs<TMask> a) where TMask : struct, IAttentionMask");
        using var _ = w.Block();
        // Heads vary fastest, key blocks from the first: the longest lists (the first keys, which every later query
        // reaches under causal and anchor masks) start first.
        w.Line("int kbk = Grid.IdxY, kvh = Grid.IdxX, row = Grid.IdxZ;");
        Common(w, d);
        w.Line($"int k0 = kbk * {BwdKeys};");
        w.Line("int tile = row * a.KeyBlocks + kbk;");
        w.Line("int count = a.Counts[tile];");
        w.Line("long listBase = (long)tile * a.QueryTiles;");
        w.Line($"long kvHead = (long)kvh * {d};");
        w.Line("ref ushort gq = ref a.Q[0];");
        w.Line("ref ushort gk = ref a.K[0];");
        w.Line("ref ushort gv = ref a.V[0];");
        w.Line("ref ushort gdo = ref a.DO[0];");
        w.Line("var sv32 = smem.Cast<uint>();");
        w.Line("int groupSize = a.Heads / a.KvHeads;");
        // Steps: for each query head of the group, each listed query tile in halves of 32 queries.
        w.Line("int perHead = count * 2, steps = groupSize * perHead;");
        LoadTile(w, d, BwdKeys, I(kS), "k0", "gk", "a.KOffset", "a.KStride", "kvHead", BwdThreads);
        LoadTile(w, d, BwdKeys, I(vS), "k0", "gv", "a.VOffset", "a.VStride", "kvHead", BwdThreads);
        w.Line("TC.CommitAsync();");
        w.Line("if (steps > 0)");
        using (w.Block())
        {
            StepOf(w, d, "0", "P");
            LoadTile(w, d, HalfQ, I(bufS), "q0P", "gq", "a.QOffset", "a.QStride", "qHeadP", BwdThreads);
            LoadTile(w, d, HalfQ, I(bufS + HalfQ * d), "q0P", "gdo", "a.DOOffset", "a.DOStride", "qHeadP", BwdThreads);
            w.Line($"if (tid < {StepValues}) sv32[{valS} + tid] = FlashKernels.StepValue(a, docs, row, kvh * groupSize + hiP, q0P + (tid & {HalfQ - 1}), tid >> 5);");
        }
        w.Line("TC.CommitAsync();");
        for (int b = 0; b < nt; b++) w.Line($"F4 dk{b} = default, dv{b} = default;");
        w.Line("int kw = warp * 16;");
        w.Line("int ka = k0 + kw + g, kb = ka + 8;");
        w.Line("int docKa = docs.IndexOf(ka < seq ? ka : seq - 1), docKb = docs.IndexOf(kb < seq ? kb : seq - 1);");
        w.Line("bool exact = a.Mask.Spans(docs, 0, 0).Exact;");
        w.Line($"int aRowOff = (kw + (lane & 15)) * {d}, aHalf = lane >> 4;");
        w.Line($"int bRowOff = ((lane & 7) + ((lane >> 4) << 3)) * {d}, bHalf = (lane >> 3) & 1;");
        w.Line($"int tRowOff = ((lane & 7) + (((lane >> 3) & 1) << 3)) * {d}, tHalf = lane >> 4;");
        Swizzles(w, "ca", "aHalf");
        Swizzles(w, "cb", "bHalf");
        Swizzles(w, "ct", "tHalf");
        // dQ = dS·K: warp → 16 queries (qw) × D/4 dims (dBase), over all the group's keys.
        w.Line($"int qw = (warp & 1) * 16, dBase = (warp >> 1) * {d / 4};");
        // dS^T rows are swizzled by (key / 2) % 4, which for this lane's rows (16t + dsRow to read; kw + g and kw + g + 8 to
        // write) does not depend on t or the 8: lane offsets plus constants again.
        w.Line($"int dsRow = (lane & 7) + ((lane >> 4) << 3), dsChunk = (qw >> 3) + ((lane >> 3) & 1);");
        w.Line($"int dsRead = dsRow * {HalfQ} + ((dsChunk ^ ((dsRow >> 1) & 3)) << 3);");
        w.Line($"int dsx = (g >> 1) & 3, dsWrite = (kw + g) * {HalfQ} + 2 * tq, dsc0 = dsx << 3, dsc1 = (dsx ^ 1) << 3, dsc2 = (dsx ^ 2) << 3, dsc3 = (dsx ^ 3) << 3;");
        w.Line("float sl = a.ScaleLog2;");
        w.Line($"long dqStride = (long)a.Heads * {d};");
        w.Line("for (int n = 0; n < steps; n++)");
        using (w.Block())
        {
            StepOf(w, d, "n", "");
            w.Line($"int qS = {bufS} + (n & 1) * {bufShorts}, oS = qS + {HalfQ * d};");
            // Prefetch the next step's Q and dO halves into the other buffer (free since the last step's second
            // barrier), and one of its staged values per thread (LSE, Δ, key spans) into a register, stored at the
            // step's end.
            w.Line("uint staged = 0;");
            w.Line("if (n + 1 < steps)");
            using (w.Block())
            {
                w.Line("int nn = n + 1;");
                StepOf(w, d, "nn", "N");
                w.Line($"int qSN = {bufS} + (nn & 1) * {bufShorts};");
                LoadTile(w, d, HalfQ, "qSN", "q0N", "gq", "a.QOffset", "a.QStride", "qHeadN", BwdThreads);
                LoadTile(w, d, HalfQ, $"qSN + {HalfQ * d}", "q0N", "gdo", "a.DOOffset", "a.DOStride", "qHeadN", BwdThreads);
                w.Line($"if (tid < {StepValues}) staged = FlashKernels.StepValue(a, docs, row, kvh * groupSize + hiN, q0N + (tid & {HalfQ - 1}), tid >> 5);");
            }
            w.Line("TC.CommitAsync();");
            w.Line($"bool partial = (entry & 3) == (int)TileKind.Partial || q0 + {HalfQ} > seq || k0 + {BwdKeys} > seq;");
            w.Line("TC.WaitAsync1();");
            w.Line("Group.Barrier();");
            w.Line($"int vals = {valS} + (n & 1) * {StepValues}, valsLane = 2 * vals + 4 * tq, dsB = {dsS} + (n & 1) * {dsShorts};");
            // S^T = K·Q^T and dP^T = V·dO^T: M = the warp's 16 keys, N = 32 queries, K = D.
            for (int j = 0; j < 4; j++) w.Line($"F4 st{j} = default, dp{j} = default;");
            for (int s = 0; s < ks; s++)
            {
                w.Line($"{{ int ca = {Chunk("ca", s)}, cb = {Chunk("cb", s)};");
                w.Line($"  U4 kf = TC.LoadMatrix(ref sm, {kS} + aRowOff + ca); U4 vf = TC.LoadMatrix(ref sm, {vS} + aRowOff + ca);");
                for (int jp = 0; jp < 2; jp++)
                {
                    w.Line($"  {{ U4 qf = TC.LoadMatrix(ref sm, qS + {jp * 16 * d} + bRowOff + cb); st{2 * jp} = TC.Mma(kf, qf.X, qf.Y, st{2 * jp}); st{2 * jp + 1} = TC.Mma(kf, qf.Z, qf.W, st{2 * jp + 1}); }}");
                    w.Line($"  {{ U4 of = TC.LoadMatrix(ref sm, oS + {jp * 16 * d} + bRowOff + cb); dp{2 * jp} = TC.Mma(vf, of.X, of.Y, dp{2 * jp}); dp{2 * jp + 1} = TC.Mma(vf, of.Z, of.W, dp{2 * jp + 1}); }}");
                }
                w.Line("}");
            }
            // P^T = exp2(S^T·scale·log2 e − lse₂(q)), dS^T = P^T ∘ (dP^T − Δ(q)); queries 8j + 2tq + e. Masked pairs
            // (and queries past the end, whose rows were zero-filled) get P = 0, hence dS = 0.
            for (int j = 0; j < 4; j++)
                for (int e = 0; e < 2; e++)
                {
                    string lo = e == 0 ? "X" : "Y", hi = e == 0 ? "Z" : "W";
                    string at = $"{8 * j + e} + 2 * tq";
                    w.Line($"{{ float lse = Interop.IntAsFloat(TC.LoadShared32(ref sm, valsLane + {2 * (8 * j + e)})), dl = Interop.IntAsFloat(TC.LoadShared32(ref sm, valsLane + {2 * (HalfQ + 8 * j + e)}));");
                    w.Line($"  float pa = TC.Exp2(st{j}.{lo} * sl - lse), pb = TC.Exp2(st{j}.{hi} * sl - lse);");
                    w.Line($"  if (partial) {{ int q = q0 + {at}; bool inQ = q < seq; if (exact) {{ int lo0 = (int)sv32[vals + {2 * HalfQ} + {at}], hi0 = (int)sv32[vals + {3 * HalfQ} + {at}], " +
                           $"lo1 = (int)sv32[vals + {4 * HalfQ} + {at}], hi1 = (int)sv32[vals + {5 * HalfQ} + {at}]; " +
                           "pa = inQ & ka < seq & RowSpans.Contains(ka, lo0, hi0, lo1, hi1) ? pa : 0f; pb = inQ & kb < seq & RowSpans.Contains(kb, lo0, hi0, lo1, hi1) ? pb : 0f; } " +
                           "else { int dq = docs.IndexOf(inQ ? q : seq - 1); if (!(inQ && ka < seq && a.Mask.Allows(docs, q, ka, dq, docKa))) pa = 0f; if (!(inQ && kb < seq && a.Mask.Allows(docs, q, kb, dq, docKb))) pb = 0f; } }");
                    w.Line($"  st{j}.{lo} = pa; st{j}.{hi} = pb; dp{j}.{lo} = pa * (dp{j}.{lo} - dl); dp{j}.{hi} = pb * (dp{j}.{hi} - dl); }}");
                }
            for (int t = 0; t < 2; t++)
            {
                w.Line(PackA("pt", "st", t));
                w.Line(PackA("ds", "dp", t));
            }
            // dS^T to shared memory [keys][32 queries], 16-byte chunks swizzled by (key / 2) % 4.
            for (int t = 0; t < 2; t++)
            {
                // X: key row g, queries of n-tile 2t; Y: row g + 8, 2t; Z: row g, 2t + 1; W: row g + 8, 2t + 1.
                foreach (var (reg, r8, dj) in new[] { ("X", 0, 0), ("Y", 1, 0), ("Z", 0, 1), ("W", 1, 1) })
                {
                    int j = 2 * t + dj;
                    w.Line($"TC.StoreShared32(ref sm, dsB + dsWrite + {r8 * 8 * HalfQ} + dsc{j}, ds{t}.{reg});");
                }
            }
            // dV += P^T·dO and dK += dS^T·Q: M = 16 keys, N = D, K = 32 queries.
            for (int bp = 0; bp < nt / 2; bp++)
                for (int t = 0; t < 2; t++)
                {
                    w.Line($"{{ int c = {Chunk("ct", bp)};");
                    w.Line($"  U4 of = TC.LoadMatrixTransposed(ref sm, oS + {t * 16 * d} + tRowOff + c); dv{2 * bp} = TC.Mma(pt{t}, of.X, of.Y, dv{2 * bp}); dv{2 * bp + 1} = TC.Mma(pt{t}, of.Z, of.W, dv{2 * bp + 1});");
                    w.Line($"  U4 qf = TC.LoadMatrixTransposed(ref sm, qS + {t * 16 * d} + tRowOff + c); dk{2 * bp} = TC.Mma(ds{t}, qf.X, qf.Y, dk{2 * bp}); dk{2 * bp + 1} = TC.Mma(ds{t}, qf.Z, qf.W, dk{2 * bp + 1}); }}");
                }
            w.Line("Group.Barrier();");
            // dQ += dS·K: M = 16 queries (qw), N = D/4 (dBase), K = the group's keys.
            for (int b = 0; b < dqTiles; b++) w.Line($"F4 dq{b} = default;");
            for (int t = 0; t < BwdKeys / 16; t++)
            {
                w.Line($"{{ U4 af = TC.LoadMatrixTransposed(ref sm, dsB + dsRead + {16 * t * HalfQ});");
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
            // No barrier ends the step: the next step writes the other dS^T buffer, its prefetch fills the Q/dO buffer
            // that every warp finished with before this step's second barrier, and its staged values are read after
            // its first barrier.
            w.Line($"if (tid < {StepValues} && n + 1 < steps) sv32[{valS} + ((n + 1) & 1) * {StepValues} + tid] = staged;");
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
