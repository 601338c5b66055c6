//! Arithmetic over repeated runs.

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
}
