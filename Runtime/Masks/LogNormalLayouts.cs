namespace ModelGen.Masks;

/// <summary>Packed windows whose document lengths follow a log-normal distribution, as in the paper's data.</summary>
public static class LogNormalLayouts
{
    /// <summary>
    /// An anchored layout of <paramref name="length"/> tokens with document lengths drawn from a log-normal of the given
    /// mean (σ = 1 in log space); the last document is cut at the window end.
    /// </summary>
    public static DocumentLayout Create(int length, double meanLength, Random random, double sigma = 1.0)
    {
        double mu = Math.Log(meanLength) - sigma * sigma / 2;
        var starts = new List<int> { 1 };
        int at = 1;
        while (true)
        {
            double z = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            int n = Math.Max(1, (int)Math.Round(Math.Exp(mu + sigma * z)));
            at += n;
            if (at >= length) break;
            starts.Add(at);
        }
        return DocumentLayout.Anchored(length, starts.ToArray());
    }
}
