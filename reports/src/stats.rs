//! Arithmetic over repeated runs: the median and a confidence interval
//! for it, and a rank test between two sets of runs, as the comparison
//! tables and the plots use them.
//!
//! Why not the kernel test robot's mean and standard deviation: a run on a
//! shared machine is now and then hit by a preemption or a neighbour's
//! burst, and one such run moves a mean and a deviation as far as it
//! likes; it moves a median by one place. The interval and the test below
//! assume nothing about the distribution of the runs (order statistics,
//! and Mann and Whitney's rank test), so they hold for latency tails too.

/// Confidence the comparison tables and plots aim for.
pub const CONFIDENCE: f64 = 0.95;

/// The median of `xs` and a confidence interval for it.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct MedianCi {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The interval's ends: two order statistics of the runs.
    pub lo: f64,
    /// See `lo`.
    pub hi: f64,
    /// The probability that an interval made this way holds the true
    /// median: at least [`CONFIDENCE`] where the runs allow it; with 5 runs
    /// or fewer the widest interval, from the least to the greatest run,
    /// has less (94% for 5, 88% for 4).
    pub confidence: f64,
    /// Runs.
    pub n: usize,
}

impl MedianCi {
    /// The median and interval of `xs` (`None` when empty or when a value
    /// is not finite).
    ///
    /// The interval is `[x(k), x(n+1-k)]` of the sorted runs for the
    /// largest `k` whose coverage, `1 - 2 P(Binomial(n, 1/2) < k)`, is at
    /// least [`CONFIDENCE`]: the textbook distribution-free interval for
    /// a median.
    pub fn of(xs: &[f64]) -> Option<MedianCi> {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut s = xs.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        // P(B < k) for B ~ Binomial(n, 1/2), k = 1, 2, ...
        let coverage = |k: usize| 1.0 - 2.0 * binomial_half_below(n, k);
        let mut k = 1;
        while k < n / 2 && coverage(k + 1) >= CONFIDENCE {
            k += 1;
        }
        Some(MedianCi { median, lo: s[k - 1], hi: s[n - k], confidence: coverage(k), n })
    }

    /// Half the interval's width as a share of the median: how far the
    /// runs let one trust the median (`None` for a zero median).
    pub fn relative_half_width(&self) -> Option<f64> {
        (self.median != 0.0).then(|| (self.hi - self.lo) / 2.0 / self.median.abs())
    }
}

/// `P(B < k)` for `B ~ Binomial(n, 1/2)`.
fn binomial_half_below(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // P(B = 0)
    let mut sum = 0.0;
    for i in 0..k.min(n + 1) {
        sum += term;
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    sum
}

/// The two-sided p-value of Mann and Whitney's rank test of `a` against
/// `b`: the probability, were both drawn from one distribution, of a rank
/// sum of `a` at least as far from its expectation as the one seen.
/// Exact: the rank sum's distribution over every way of choosing `a`'s
/// places among the pooled runs is counted, ties taking the average of
/// their ranks (so the test is conditional on the ties seen, and correct
/// for figures that repeat, such as histogram quantiles). 1 when either
/// side is empty.
pub fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    // Doubled ranks, so that tied (average) ranks stay integers.
    let mut pooled: Vec<(f64, bool)> = a.iter().map(|&x| (x, true)).chain(b.iter().map(|&x| (x, false))).collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = n + m;
    let mut rank2 = vec![0usize; total];
    let mut i = 0;
    while i < total {
        let mut j = i;
        while j + 1 < total && pooled[j + 1].0 == pooled[i].0 {
            j += 1;
        }
        // Places i..=j (ranks i+1..=j+1) share their average rank.
        for r in &mut rank2[i..=j] {
            *r = i + j + 2;
        }
        i = j + 1;
    }
    let seen: usize = (0..total).filter(|&k| pooled[k].1).map(|k| rank2[k]).sum();
    let max_sum: usize = rank2.iter().sum();
    // ways[c][s]: subsets of c of the places seen so far whose doubled
    // ranks sum to s.
    let mut ways = vec![vec![0f64; max_sum + 1]; n + 1];
    ways[0][0] = 1.0;
    for &r in &rank2 {
        for c in (1..=n).rev() {
            for s in (r..=max_sum).rev() {
                ways[c][s] += ways[c - 1][s - r];
            }
        }
    }
    let all: f64 = ways[n].iter().sum();
    // The expected doubled rank sum is n (N + 1); compare distances, in
    // doubled units.
    let expected = n * (total + 1);
    let distance = seen.abs_diff(expected);
    let extreme: f64 =
        ways[n].iter().enumerate().filter(|&(s, _)| s.abs_diff(expected) >= distance).map(|(_, w)| w).sum();
    (extreme / all).min(1.0)
}

/// Whether `patch` differs from `base` in a way a second run reproduces.
/// The runs are split into two halves by the parity of their place (the
/// report interleaves policies run by run, so each half spans the whole
/// time the cell took); the change counts when, in each half on its own,
/// Mann and Whitney's test finds it at `1 - CONFIDENCE` and it goes the
/// same way (by the halves' medians) as over all runs. A half needs at
/// least 4 runs a side for that test to be able to say so; with fewer,
/// no change is called reproduced.
pub fn reproduced(base: &[f64], patch: &[f64]) -> bool {
    let half = |xs: &[f64], parity: usize| -> Vec<f64> { xs.iter().skip(parity).step_by(2).copied().collect() };
    let median = |xs: &[f64]| MedianCi::of(xs).map(|c| c.median);
    let (Some(b), Some(p)) = (median(base), median(patch)) else { return false };
    let direction = (p - b).signum();
    if direction == 0.0 {
        return false;
    }
    (0..2).all(|parity| {
        let (hb, hp) = (half(base, parity), half(patch, parity));
        if hb.len() < MIN_RUNS_PER_HALF || hp.len() < MIN_RUNS_PER_HALF {
            return false;
        }
        let same_way = matches!((median(&hb), median(&hp)), (Some(b), Some(p)) if (p - b).signum() == direction);
        same_way && mann_whitney_p(&hb, &hp) < 1.0 - CONFIDENCE
    })
}

/// Runs a side each half of a comparison needs before a change can be
/// called reproduced: with 4 against 4, complete separation has a
/// two-sided p of 2/70 (below 0.05); with 3 against 3 the least p is 0.1.
pub const MIN_RUNS_PER_HALF: usize = 4;

/// Mean and sample standard deviation (n - 1); the deviation is 0 for
/// fewer than two values. `None` for no values.
pub fn mean_stddev(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() < 2 { 0.0 } else { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) };
    Some((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_deviation() {
        assert_eq!(mean_stddev(&[]), None);
        assert_eq!(mean_stddev(&[3.0]), Some((3.0, 0.0)));
        let (m, s) = mean_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(m, 5.0);
        assert!((s - 2.138).abs() < 1e-3, "{s}");
    }

    #[test]
    fn the_median_interval_is_the_order_statistics_the_binomial_gives() {
        assert_eq!(MedianCi::of(&[]), None);
        let one = MedianCi::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.lo, one.hi, one.confidence), (7.0, 7.0, 7.0, 0.0));
        // 5 runs: the widest interval, min to max, covers 1 - 2/32.
        let five = MedianCi::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((five.median, five.lo, five.hi), (3.0, 1.0, 5.0));
        assert!((five.confidence - 0.9375).abs() < 1e-12);
        // 10 runs: x(2)..x(9) covers 97.9%, x(3)..x(8) only 89%.
        let xs: Vec<f64> = (1..=10).map(f64::from).collect();
        let ten = MedianCi::of(&xs).unwrap();
        assert_eq!((ten.median, ten.lo, ten.hi), (5.5, 2.0, 9.0));
        assert!((ten.confidence - 0.978_515_625).abs() < 1e-9, "{ten:?}");
        // 20 runs: x(6)..x(15), 95.9%.
        let xs: Vec<f64> = (1..=20).map(f64::from).collect();
        let twenty = MedianCi::of(&xs).unwrap();
        assert_eq!((twenty.lo, twenty.hi), (6.0, 15.0));
        assert!(twenty.confidence >= CONFIDENCE && twenty.confidence < 0.96, "{twenty:?}");
        assert_eq!(twenty.relative_half_width(), Some(4.5 / 10.5));
        assert_eq!(MedianCi::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn mann_whitney_counts_the_rank_sums_exactly() {
        // Complete separation of 5 against 5: 2 of the C(10, 5) = 252
        // choices are as extreme.
        let low = [1.0, 2.0, 3.0, 4.0, 5.0];
        let high = [6.0, 7.0, 8.0, 9.0, 10.0];
        assert!((mann_whitney_p(&low, &high) - 2.0 / 252.0).abs() < 1e-12);
        assert!((mann_whitney_p(&high, &low) - 2.0 / 252.0).abs() < 1e-12);
        // 4 against 4: 2/70; 3 against 3: 2/20.
        assert!((mann_whitney_p(&low[..4], &high[..4]) - 2.0 / 70.0).abs() < 1e-12);
        assert!((mann_whitney_p(&low[..3], &high[..3]) - 0.1).abs() < 1e-12);
        // Interleaved: nothing to see.
        assert_eq!(mann_whitney_p(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]), 1.0);
        // All tied: every arrangement has the same rank sum.
        assert_eq!(mann_whitney_p(&[3.0; 4], &[3.0; 4]), 1.0);
        // Ties across the sides, separated otherwise: {1,1,2 | 2,3,3}
        // pools to doubled ranks 3,3,7,7,11,11; a's sum 13 of an
        // expected 21. Sums as far (13, 29 and beyond) come from 2 of
        // the C(6, 3) = 20 choices ({3,3,7} twice), 2 more on the high
        // side: 4/20.
        assert!((mann_whitney_p(&[1.0, 1.0, 2.0], &[2.0, 3.0, 3.0]) - 0.2).abs() < 1e-12);
        assert_eq!(mann_whitney_p(&[], &[1.0]), 1.0);
    }

    #[test]
    fn a_change_is_reproduced_only_when_both_halves_show_it_the_same_way() {
        let base: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i % 3)).collect();
        let faster: Vec<f64> = (0..10).map(|i| 90.0 + f64::from(i % 3)).collect();
        assert!(reproduced(&base, &faster));
        assert!(reproduced(&faster, &base));
        // One half shows it, the other does not (its runs overlap).
        let mut mixed = faster.clone();
        for i in (1..10).step_by(2) {
            mixed[i] = 100.0 + f64::from(i as u32 % 3);
        }
        assert!(!reproduced(&base, &mixed));
        // Too few runs to tell, however large the change.
        assert!(!reproduced(&base[..6], &faster[..6]));
        assert!(!reproduced(&base, &base));
    }
}
