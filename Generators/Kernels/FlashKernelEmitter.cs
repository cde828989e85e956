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
/// Backward (FlashAttention-2's division of the work): a group of 8 warps owns 128 keys of one key/value head, keeps their
/// K and V in shared memory and walks the group's query heads and the non-empty 64-query tiles of its key block (the next
/// tile's Q, dO, LSE, Δ and spans load while this one is used). Per step, each warp computes a 32×32 block of S and dP
/// and writes P and dS to shared memory (bf16); after one barrier each accumulates its 32 keys × D/2 of dK and dV in
/// registers and its 32 queries × D/4 of dQ, which it adds atomically in fp32. Two barriers per step of 64 queries.
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
        FragmentRows(w, "qa", "qb", (r, q, lo, hi) =>
        {
            w.Line($"long ob = (a.OOffset + (rowTok + {q}) * a.OStride + qHead + 2 * tq) >> 1;");
            for (int b = 0; b < nt; b++) w.Line($"o32[ob + {4 * b}] = TC.Pack(o{b}.{lo} * i{r}, o{b}.{hi} * i{r});");
            w.Line($"if (tq == 0 && a.Lse.Length > 0) a.Lse[((long)row * a.Heads + h) * seq + {q}] = l{r} > 0f ? (m{r} + TC.Log2(l{r})) * 0.6931471805599453f : float.NegativeInfinity;");
        });
    }

    /// <summary>Forward shared memory in bf16 elements: the group's Q rows, two buffers of K and V tiles, the queries' key spans (4 ints each).</summary>
    private static int ForwardShorts(int d) => FwdQ(d) * d + 4 * Tile * d + 2 * 4 * FwdQ(d);

    /// <summary>
    /// Backward shared memory in bf16 elements: K and V blocks, two buffers of a step's Q and dO tiles (the next step's
    /// load while this one is used), P and dS of the step [64 queries][128 keys], two buffers of step values.
    /// </summary>
    private static int BackwardShorts(int d) => 2 * BwdKeys * d + 2 * 2 * StepQ * d + 2 * StepQ * BwdKeys + 2 * StepValues * 2;

    /// <summary>Per-step values staged in shared memory (two buffers): LSE, Δ and the four key-span bounds of each of the step's queries.</summary>
    private const int StepValues = 6 * StepQ;

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

    /// <summary>
    /// Writes out the two rows an accumulator fragment holds in each lane (g in fields X, Y; g + 8 in Z, W), each in a
    /// block guarded by <c>row &lt; seq</c>: <paramref name="body"/> gets the row's index (0, 1), its local
    /// (<paramref name="first"/> or <paramref name="second"/>) and its two field names.
    /// </summary>
    private static void FragmentRows(CodeWriter w, string first, string second, Action<int, string, string, string> body)
    {
        for (int r = 0; r < 2; r++)
        {
            string row = r == 0 ? first : second;
            w.Line($"if ({row} < seq)");
            using (w.Block()) body(r, row, r == 0 ? "X" : "Z", r == 0 ? "Y" : "W");
        }
    }

    private static string Chain(string op, int count, Func<int, string> term)
    {
        string result = term(0);
        for (int i = 1; i < count; i++) result = op == "+" ? $"{result} + {term(i)}" : $"{op}({result}, {term(i)})";
        return result;
    }

    /// <summary>Queries per backward step: one tile of the key block's column list.</summary>
    private const int StepQ = Tile;

    /// <summary>Keys per backward group: two tiles, so that each step's dQ atomics cover 128 keys at once.</summary>
    private const int BwdKeys = 2 * Tile;

    /// <summary>Threads per backward group: 8 warps.</summary>
    private const int BwdThreads = 256;

    /// <summary>Writes the step <paramref name="step"/>'s head and first query into locals suffixed <paramref name="suffix"/>.</summary>
    private static void StepOf(CodeWriter w, int d, string step, string suffix)
    {
        w.Line($"int hi{suffix} = {step} / count, entry{suffix} = a.Lists[listBase + {step} - hi{suffix} * count];");
        w.Line($"int q0{suffix} = (entry{suffix} >> 2) * {Tile};");
        w.Line($"long qHead{suffix} = (long)(kvh * groupSize + hi{suffix}) * {d};");
    }

    /// <summary>
    /// The expression of step value <c>tid + <paramref name="plus"/></c> of the step whose locals have the suffix
    /// <paramref name="suffix"/>: value v is kind v / 64 of query v % 64, so thread t stages values t and t + 256 of the
    /// <see cref="StepValues"/>.
    /// </summary>
    private static string StageValue(string suffix, int plus) =>
        $"FlashKernels.StepValue(a, docs, row, kvh * groupSize + hi{suffix}, q0{suffix} + (tid & {StepQ - 1}), (tid + {plus}) >> 6)";

    private static void Backward(CodeWriter w, int d)
    {
        int ks = d / 16;
        int kS = 0, vS = BwdKeys * d, bufS = 2 * BwdKeys * d, bufShorts = 2 * StepQ * d;
        int pS = bufS + 2 * bufShorts, dsS = pS + StepQ * BwdKeys, valS = dsS + StepQ * BwdKeys;
        int total = BackwardShorts(d);
        int nKV = d / 16, nQ = d / 32;   // n-tiles per warp: dK/dV (D/2 dims), dQ (D/4 dims)
        const int Row = BwdKeys;          // P and dS rows: 128 keys, 16 chunks swizzled by query % 8
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
        w.Line("int groupSize = a.Heads / a.KvHeads;");
        // Steps: for each query head of the group, each listed query tile.
        w.Line("int steps = groupSize * count;");
        LoadTile(w, d, BwdKeys, I(kS), "k0", "gk", "a.KOffset", "a.KStride", "kvHead", BwdThreads);
        LoadTile(w, d, BwdKeys, I(vS), "k0", "gv", "a.VOffset", "a.VStride", "kvHead", BwdThreads);
        w.Line("if (steps > 0)");
        using (w.Block())
        {
            StepOf(w, d, "0", "P");
            LoadTile(w, d, StepQ, I(bufS), "q0P", "gq", "a.QOffset", "a.QStride", "qHeadP", BwdThreads);
            LoadTile(w, d, StepQ, I(bufS + StepQ * d), "q0P", "gdo", "a.DOOffset", "a.DOStride", "qHeadP", BwdThreads);
            w.Line($"TC.StoreShared32(ref sm, {valS} + 2 * tid, {StageValue("P", 0)});");
            w.Line($"if (tid < {StepValues - BwdThreads}) TC.StoreShared32(ref sm, {valS + 2 * BwdThreads} + 2 * tid, {StageValue("P", BwdThreads)});");
        }
        w.Line("TC.CommitAsync();");
        // Warp roles. S, dP: queries 32·wm, keys 32·wn. dK, dV: keys 32·wk, dims D/2·wd. dQ: queries 32·wq, dims D/4·wc.
        w.Line("int wm = warp & 1, wn = warp >> 1, wk = warp >> 1, wd = warp & 1, wq = warp & 1, wc = warp >> 1;");
        for (int mi = 0; mi < 2; mi++)
            for (int b = 0; b < nKV; b++) w.Line($"F4 dk{mi}{b} = default, dv{mi}{b} = default;");
        // ldmatrix lanes: A fragments (non-transposed) read row lane % 16, chunk half lane / 16; B fragments read row
        // lane % 8 + 8·(lane / 16), chunk half (lane / 8) % 2; transposed B fragments read row lane % 8 + 8·((lane / 8) % 2),
        // chunk half lane / 16. Every row here is a multiple of 8 plus lane % 8, so its swizzle is sw.
        w.Line("int aHalf = lane >> 4, bHalf = (lane >> 3) & 1, tHalf = lane >> 4;");
        w.Line($"int aRow = (wm * 32 + (lane & 15)) * {d}, bRow = (wn * 32 + (lane & 7) + ((lane >> 4) << 3)) * {d};");
        w.Line($"int tRow = ((lane & 7) + (((lane >> 3) & 1) << 3)) * {d};");
        Swizzles(w, "ca", "aHalf");
        Swizzles(w, "cb", "bHalf");
        // dV, dK: the dO/Q chunks of dims D/2·wd + 16·bp (+ 8·tHalf); dQ: the K chunks of dims D/4·wc + 16·bp.
        w.Line($"int ctx = (({d / 16} * wd) | tHalf) ^ sw, ct0 = ctx << 3, ct1 = (ctx ^ 2) << 3, ct2 = (ctx ^ 4) << 3, ct3 = (ctx ^ 6) << 3;");
        w.Line($"int cqx = (({d / 32} * wc) | tHalf) ^ sw, cq0 = cqx << 3, cq1 = (cqx ^ 2) << 3;");
        // P^T and dS^T as A fragments of dV, dK (transposed): P rows (queries) lane % 8 + 8·(lane / 16), key chunk
        // 4·wk + 2·mi + (lane / 8) % 2.
        w.Line($"int pRowT = ((lane & 7) + ((lane >> 4) << 3)) * {Row}, pcx = ((wk << 2) | bHalf) ^ sw, pc0 = pcx << 3, pc1 = (pcx ^ 2) << 3;");
        // dS as the A fragment of dQ: rows 32·wq + lane % 16, key chunk 2t + lane / 16.
        w.Line($"int dsRowA = (wq * 32 + (lane & 15)) * {Row};");
        // Where this lane writes P and dS: rows 32·wm + 16·mi + 8·h + g, keys 32·wn + 8·nj + 2·tq (chunk 4·wn + nj).
        w.Line($"int pw = (wm * 32 + g) * {Row} + 2 * tq, pw0 = ((wn << 2) ^ g) << 3, pw1 = (((wn << 2) + 1) ^ g) << 3, pw2 = (((wn << 2) + 2) ^ g) << 3, pw3 = (((wn << 2) + 3) ^ g) << 3;");
        w.Line("bool exact = a.Mask.Spans(docs, 0, 0).Exact;");
        w.Line("float sl = a.ScaleLog2;");
        w.Line($"long dqStride = (long)a.Heads * {d};");
        w.Line("for (int n = 0; n < steps; n++)");
        using (w.Block())
        {
            StepOf(w, d, "n", "");
            w.Line($"int qS = {bufS} + (n & 1) * {bufShorts}, oS = qS + {StepQ * d};");
            // Every warp is past the last step here: the other Q/dO buffer and value buffer are free for the next step.
            w.Line("TC.WaitAsync0();");
            w.Line("Group.Barrier();");
            w.Line("uint staged0 = 0, staged1 = 0;");
            w.Line("if (n + 1 < steps)");
            using (w.Block())
            {
                w.Line("int nn = n + 1;");
                StepOf(w, d, "nn", "N");
                w.Line($"int qSN = {bufS} + (nn & 1) * {bufShorts};");
                LoadTile(w, d, StepQ, "qSN", "q0N", "gq", "a.QOffset", "a.QStride", "qHeadN", BwdThreads);
                LoadTile(w, d, StepQ, $"qSN + {StepQ * d}", "q0N", "gdo", "a.DOOffset", "a.DOStride", "qHeadN", BwdThreads);
                w.Line($"staged0 = {StageValue("N", 0)};");
                w.Line($"if (tid < {StepValues - BwdThreads}) staged1 = {StageValue("N", BwdThreads)};");
            }
            w.Line("TC.CommitAsync();");
            w.Line($"bool partial = (entry & 3) == (int)TileKind.Partial || q0 + {StepQ} > seq || k0 + {BwdKeys} > seq;");
            w.Line($"int vals = {valS} + (n & 1) * {2 * StepValues};");
            // S = Q·K^T, then dP = dO·V^T: M = the warp's 32 queries (2 tiles), N = its 32 keys (4 tiles), K = D.
            foreach (var (acc, aS, bS) in new[] { ("s", "qS", I(kS)), ("dp", "oS", I(vS)) })
            {
                for (int mi = 0; mi < 2; mi++) w.Line($"F4 {acc}{mi}0 = default, {acc}{mi}1 = default, {acc}{mi}2 = default, {acc}{mi}3 = default;");
                for (int s = 0; s < ks; s++)
                {
                    w.Line($"{{ U4 fa0 = TC.LoadMatrix(ref sm, {aS} + aRow + {Chunk("ca", s)}), fa1 = TC.LoadMatrix(ref sm, {aS} + aRow + {16 * d} + {Chunk("ca", s)});");
                    w.Line($"  U4 fb0 = TC.LoadMatrix(ref sm, {bS} + bRow + {Chunk("cb", s)}), fb1 = TC.LoadMatrix(ref sm, {bS} + bRow + {16 * d} + {Chunk("cb", s)});");
                    for (int mi = 0; mi < 2; mi++)
                        w.Line($"  {acc}{mi}0 = TC.Mma(fa{mi}, fb0.X, fb0.Y, {acc}{mi}0); {acc}{mi}1 = TC.Mma(fa{mi}, fb0.Z, fb0.W, {acc}{mi}1); " +
                               $"{acc}{mi}2 = TC.Mma(fa{mi}, fb1.X, fb1.Y, {acc}{mi}2); {acc}{mi}3 = TC.Mma(fa{mi}, fb1.Z, fb1.W, {acc}{mi}3);");
                    w.Line("}");
                }
            }
            // P = exp2(S·scale·log2 e − lse₂(q)), dS = P ∘ (dP − Δ(q)) for queries 32·wm + 16·mi + g (+ 8) and keys
            // 32·wn + 8·nj + 2·tq (+ 1). Masked pairs (and queries or keys past the end, whose rows were zero-filled) get
            // P = 0, hence dS = 0. Both go to shared memory as bf16 pairs.
            for (int mi = 0; mi < 2; mi++)
            {
                w.Line("{");
                for (int h = 0; h < 2; h++)
                {
                    int r = 16 * mi + 8 * h;
                    w.Line($"  int vr{h} = vals + 2 * (wm * 32 + g + {r});");
                    w.Line($"  float lse{h} = Interop.IntAsFloat(TC.LoadShared32(ref sm, vr{h})), dl{h} = Interop.IntAsFloat(TC.LoadShared32(ref sm, vr{h} + {2 * StepQ}));");
                }
                for (int nj = 0; nj < 4; nj++)
                {
                    string sv = $"s{mi}{nj}", dv = $"dp{mi}{nj}";
                    w.Line($"  {{ float p0 = TC.Exp2({sv}.X * sl - lse0), p1 = TC.Exp2({sv}.Y * sl - lse0), p2 = TC.Exp2({sv}.Z * sl - lse1), p3 = TC.Exp2({sv}.W * sl - lse1);");
                    w.Line("    if (partial)");
                    w.Line("    {");
                    w.Line($"      int kx = k0 + wn * 32 + {8 * nj} + 2 * tq, ky = kx + 1, qx = q0 + wm * 32 + g + {16 * mi}, qy = qx + 8;");
                    w.Line("      bool inX = kx < seq, inY = ky < seq, inQx = qx < seq, inQy = qy < seq;");
                    w.Line("      if (exact)");
                    w.Line("      {");
                    w.Line($"        int lx0 = (int)TC.LoadShared32(ref sm, vr0 + {4 * StepQ}), hx0 = (int)TC.LoadShared32(ref sm, vr0 + {6 * StepQ}), lx1 = (int)TC.LoadShared32(ref sm, vr0 + {8 * StepQ}), hx1 = (int)TC.LoadShared32(ref sm, vr0 + {10 * StepQ});");
                    w.Line($"        int ly0 = (int)TC.LoadShared32(ref sm, vr1 + {4 * StepQ}), hy0 = (int)TC.LoadShared32(ref sm, vr1 + {6 * StepQ}), ly1 = (int)TC.LoadShared32(ref sm, vr1 + {8 * StepQ}), hy1 = (int)TC.LoadShared32(ref sm, vr1 + {10 * StepQ});");
                    w.Line("        p0 = inQx & inX & RowSpans.Contains(kx, lx0, hx0, lx1, hx1) ? p0 : 0f; p1 = inQx & inY & RowSpans.Contains(ky, lx0, hx0, lx1, hx1) ? p1 : 0f;");
                    w.Line("        p2 = inQy & inX & RowSpans.Contains(kx, ly0, hy0, ly1, hy1) ? p2 : 0f; p3 = inQy & inY & RowSpans.Contains(ky, ly0, hy0, ly1, hy1) ? p3 : 0f;");
                    w.Line("      }");
                    w.Line("      else");
                    w.Line("      {");
                    w.Line("        int dx = docs.IndexOf(inX ? kx : seq - 1), dy = docs.IndexOf(inY ? ky : seq - 1), dqx = docs.IndexOf(inQx ? qx : seq - 1), dqy = docs.IndexOf(inQy ? qy : seq - 1);");
                    w.Line("        if (!(inQx && inX && a.Mask.Allows(docs, qx, kx, dqx, dx))) p0 = 0f; if (!(inQx && inY && a.Mask.Allows(docs, qx, ky, dqx, dy))) p1 = 0f;");
                    w.Line("        if (!(inQy && inX && a.Mask.Allows(docs, qy, kx, dqy, dx))) p2 = 0f; if (!(inQy && inY && a.Mask.Allows(docs, qy, ky, dqy, dy))) p3 = 0f;");
                    w.Line("      }");
                    w.Line("    }");
                    w.Line($"    int at = pw + {16 * mi * Row} + pw{nj};");
                    w.Line($"    TC.StoreShared32(ref sm, {pS} + at, TC.Pack(p0, p1)); TC.StoreShared32(ref sm, {pS + 8 * Row} + at, TC.Pack(p2, p3));");
                    w.Line($"    TC.StoreShared32(ref sm, {dsS} + at, TC.Pack(p0 * ({dv}.X - dl0), p1 * ({dv}.Y - dl0))); TC.StoreShared32(ref sm, {dsS + 8 * Row} + at, TC.Pack(p2 * ({dv}.Z - dl1), p3 * ({dv}.W - dl1))); }}");
                }
                w.Line("}");
            }
            w.Line("Group.Barrier();");
            // dV += P^T·dO and dK += dS^T·Q: M = the warp's 32 keys (2 tiles), N = its D/2 dims, K = the step's 64 queries.
            for (int t = 0; t < StepQ / 16; t++)
            {
                w.Line($"{{ U4 pa0 = TC.LoadMatrixTransposed(ref sm, {pS + 16 * t * Row} + pRowT + pc0), pa1 = TC.LoadMatrixTransposed(ref sm, {pS + 16 * t * Row} + pRowT + pc1);");
                w.Line($"  U4 sa0 = TC.LoadMatrixTransposed(ref sm, {dsS + 16 * t * Row} + pRowT + pc0), sa1 = TC.LoadMatrixTransposed(ref sm, {dsS + 16 * t * Row} + pRowT + pc1);");
                for (int bp = 0; bp < nKV / 2; bp++)
                {
                    w.Line($"  {{ U4 of = TC.LoadMatrixTransposed(ref sm, oS + {16 * t * d} + tRow + ct{bp}), qf = TC.LoadMatrixTransposed(ref sm, qS + {16 * t * d} + tRow + ct{bp});");
                    for (int mi = 0; mi < 2; mi++)
                        w.Line($"    dv{mi}{2 * bp} = TC.Mma(pa{mi}, of.X, of.Y, dv{mi}{2 * bp}); dv{mi}{2 * bp + 1} = TC.Mma(pa{mi}, of.Z, of.W, dv{mi}{2 * bp + 1}); " +
                               $"dk{mi}{2 * bp} = TC.Mma(sa{mi}, qf.X, qf.Y, dk{mi}{2 * bp}); dk{mi}{2 * bp + 1} = TC.Mma(sa{mi}, qf.Z, qf.W, dk{mi}{2 * bp + 1});");
                    w.Line("  }");
                }
                w.Line("}");
            }
            // dQ += dS·K: M = the warp's 32 queries (2 tiles), N = its D/4 dims, K = the group's 128 keys.
            for (int mi = 0; mi < 2; mi++)
                for (int b = 0; b < nQ; b++) w.Line($"F4 dq{mi}{b} = default;");
            for (int t = 0; t < BwdKeys / 16; t++)
            {
                w.Line($"{{ U4 da0 = TC.LoadMatrix(ref sm, {dsS} + dsRowA + {Chunk("ca", t)}), da1 = TC.LoadMatrix(ref sm, {dsS + 16 * Row} + dsRowA + {Chunk("ca", t)});");
                for (int bp = 0; bp < nQ / 2; bp++)
                {
                    w.Line($"  {{ U4 kf = TC.LoadMatrixTransposed(ref sm, {kS + 16 * t * d} + tRow + cq{bp});");
                    for (int mi = 0; mi < 2; mi++)
                        w.Line($"    dq{mi}{2 * bp} = TC.Mma(da{mi}, kf.X, kf.Y, dq{mi}{2 * bp}); dq{mi}{2 * bp + 1} = TC.Mma(da{mi}, kf.Z, kf.W, dq{mi}{2 * bp + 1});");
                    w.Line("  }");
                }
                w.Line("}");
            }
            for (int mi = 0; mi < 2; mi++)
            {
                w.Line($"{{ int qx = q0 + wq * 32 + {16 * mi} + g, qy = qx + 8;");
                FragmentRows(w, "qx", "qy", (_, q, lo, hi) =>
                {
                    w.Line($"long o = (rowTok + {q}) * dqStride + qHead + wc * {d / 4} + 2 * tq;");
                    for (int b = 0; b < nQ; b++) w.Line($"Atomic.Add(ref a.DQ[o + {8 * b}], dq{mi}{b}.{lo}); Atomic.Add(ref a.DQ[o + {8 * b + 1}], dq{mi}{b}.{hi});");
                });
                w.Line("}");
            }
            w.Line("if (n + 1 < steps)");
            using (w.Block())
            {
                w.Line($"int next = {valS} + ((n + 1) & 1) * {2 * StepValues};");
                w.Line("TC.StoreShared32(ref sm, next + 2 * tid, staged0);");
                w.Line($"if (tid < {StepValues - BwdThreads}) TC.StoreShared32(ref sm, next + {2 * BwdThreads} + 2 * tid, staged1);");
            }
        }
        w.Line("var dk32 = a.DK.Cast<uint>();");
        w.Line("var dv32 = a.DV.Cast<uint>();");
        w.Line("float scale = a.Scale;");
        w.Line($"long kvStride = (long)a.KvHeads * {d};");
        for (int mi = 0; mi < 2; mi++)
        {
            w.Line($"{{ int kx = k0 + wk * 32 + {16 * mi} + g, ky = kx + 8;");
            FragmentRows(w, "kx", "ky", (_, k, lo, hi) =>
            {
                w.Line($"long o = ((rowTok + {k}) * kvStride + kvHead + wd * {d / 2} + 2 * tq) >> 1;");
                for (int b = 0; b < nKV; b++) w.Line($"dk32[o + {4 * b}] = TC.Pack(dk{mi}{b}.{lo} * scale, dk{mi}{b}.{hi} * scale); dv32[o + {4 * b}] = TC.Pack(dv{mi}{b}.{lo}, dv{mi}{b}.{hi});");
            });
            w.Line("}");
        }
    }
}
