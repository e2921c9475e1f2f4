namespace Uprec.Reporting.Diff;

/// <summary>Mann–Whitney U of NEW against BASE, with one-sided p-values from the normal approximation.</summary>
public sealed record MannWhitneyResult(double U, double Z, double PGreater, double PLess);

/// <summary>
/// The Mann–Whitney U test computed from two latency histograms instead of raw samples: values in the
/// same histogram bucket are ties and get mid-ranks, with the usual tie correction of the variance.
/// Both histograms come from <see cref="LatencyAccumulator"/> with the same configuration, so their
/// bucket representatives line up. Bucketing only merges values within 0.1% of each other, which can
/// only make the test more conservative (ties carry no evidence). With the sample sizes of a trace the
/// normal approximation is accurate; below ~20 samples a side the p-value is rough, and uprec needs a
/// significant p-value before a latency rule trips, so small samples err on the side of not failing CI.
/// </summary>
public static class MannWhitney
{
    public static MannWhitneyResult? Test(LatencyAccumulator baseline, LatencyAccumulator candidate)
    {
        double n1 = baseline.Count, n2 = candidate.Count;
        if (n1 == 0 || n2 == 0)
        {
            return null;
        }
        using var b = baseline.Buckets().GetEnumerator();
        using var c = candidate.Buckets().GetEnumerator();
        bool hasB = b.MoveNext(), hasC = c.MoveNext();
        double rankBase = 0;   // ranks below the current value
        double rankSumNew = 0;
        double tieTerm = 0;    // sum of t^3 - t over tie groups
        while (hasB || hasC)
        {
            long value = !hasC || (hasB && b.Current.Value <= c.Current.Value) ? b.Current.Value : c.Current.Value;
            double inBase = 0, inNew = 0;
            while (hasB && b.Current.Value == value)
            {
                inBase += b.Current.Count;
                hasB = b.MoveNext();
            }
            while (hasC && c.Current.Value == value)
            {
                inNew += c.Current.Count;
                hasC = c.MoveNext();
            }
            double t = inBase + inNew;
            double midRank = rankBase + (t + 1) / 2;
            rankSumNew += inNew * midRank;
            tieTerm += t * t * t - t;
            rankBase += t;
        }
        double n = n1 + n2;
        double u = rankSumNew - n2 * (n2 + 1) / 2;
        double mean = n1 * n2 / 2;
        double variance = n1 * n2 / 12 * (n + 1 - tieTerm / (n * (n - 1)));
        if (variance <= 0)
        {
            // Every value tied: no evidence either way.
            return new MannWhitneyResult(u, 0, 1, 1);
        }
        double sd = Math.Sqrt(variance);
        // Continuity correction towards the mean for each one-sided test.
        double zGreater = (u - mean - 0.5) / sd;
        double zLess = (u - mean + 0.5) / sd;
        return new MannWhitneyResult(u, (u - mean) / sd, UpperTail(zGreater), 1 - UpperTail(zLess));
    }

    /// <summary>P(Z > z) for a standard normal.</summary>
    public static double UpperTail(double z) => 0.5 * Erfc(z / Math.Sqrt(2));

    /// <summary>Complementary error function (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).</summary>
    public static double Erfc(double x)
    {
        double z = Math.Abs(x);
        double t = 1 / (1 + 0.5 * z);
        double r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2 - r;
    }
}
