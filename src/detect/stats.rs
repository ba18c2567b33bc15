//! The robust statistics the detectors share: Theil–Sen slopes, the Mann–Kendall trend test,
//! Sen's confidence bound and the normal tail. Pure functions over slices; no detector state.

use super::series::median_in_place;

/// Theil–Sen slope (median of pairwise slopes) and the Mann–Kendall statistic S over points
/// sorted by x. `None` with fewer than two distinct x.
pub fn theil_sen(xs: &[f64], ys: &[f64], pairs: &mut Vec<f64>) -> Option<(f64, i64)> {
    pairs.clear();
    let mut s: i64 = 0;
    let n = xs.len().min(ys.len());
    for i in 0..n {
        let (xi, yi) = (xs[i], ys[i]);
        for j in i + 1..n {
            let dy = ys[j] - yi;
            s += i64::from(dy > 0.0) - i64::from(dy < 0.0);
            let dx = xs[j] - xi;
            if dx > 0.0 {
                pairs.push(dy / dx);
            }
        }
    }
    median_in_place(pairs).map(|m| (m, s))
}

/// One-sided Mann–Kendall p-value for an increasing trend and the variance of S, with the
/// tie correction, given S and the values (reordered in place).
pub fn mann_kendall(s: i64, values: &mut [f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.len() < 3 {
        return (1.0, 0.0);
    }
    values.sort_unstable_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut run = 1.0;
    for i in 1..=values.len() {
        if i < values.len() && values[i] == values[i - 1] {
            run += 1.0;
        } else {
            ties += run * (run - 1.0) * (2.0 * run + 5.0);
            run = 1.0;
        }
    }
    let var = (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0;
    if var <= 0.0 || s <= 0 {
        return (1.0, var.max(0.0));
    }
    let z = (s as f64 - 1.0) / var.sqrt();
    (normal_upper_tail(z), var)
}

/// Lower limit of Sen's confidence interval for the slope: the `(N − z√Var(S)) / 2`-th
/// smallest of the N pairwise slopes (reordered in place); −∞ when too few pairs.
pub fn sen_lower_bound(pairs: &mut [f64], var_s: f64, z: f64) -> f64 {
    let rank = ((pairs.len() as f64 - z * var_s.max(0.0).sqrt()) / 2.0).floor();
    if rank.is_nan() || rank < 1.0 {
        return f64::NEG_INFINITY;
    }
    let k = (rank as usize - 1).min(pairs.len().saturating_sub(1));
    let (_, value, _) = pairs.select_nth_unstable_by(k, f64::total_cmp);
    *value
}

/// P(Z > z) for a standard normal Z (Abramowitz & Stegun 7.1.26, error below 1.5e-7).
pub fn normal_upper_tail(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_an_outlier() {
        let xs: Vec<f64> = (0..20).map(f64::from).collect();
        let mut ys: Vec<f64> = xs.iter().map(|x| 2.0 * x + 1.0).collect();
        ys[7] = 1000.0;
        let (slope, s) = theil_sen(&xs, &ys, &mut Vec::new()).unwrap();
        assert!((slope - 2.0).abs() < 1e-9);
        assert!(s > 150);
        assert_eq!(theil_sen(&[1.0], &[1.0], &mut Vec::new()), None);
        assert_eq!(theil_sen(&[], &[], &mut Vec::new()), None);
    }

    #[test]
    fn mann_kendall_and_sen_interval() {
        let mut up: Vec<f64> = (0..10).map(f64::from).collect();
        let (_, s) = theil_sen(&up.clone(), &up.clone(), &mut Vec::new()).unwrap();
        assert_eq!(s, 45);
        let (p, var) = mann_kendall(s, &mut up);
        assert!(p < 1e-4);
        assert!((var - 125.0).abs() < 1e-9);
        let mut flat = vec![1.0; 10];
        assert_eq!(mann_kendall(0, &mut flat).0, 1.0);
        let mut pairs: Vec<f64> = (1..=45).map(f64::from).collect();
        assert_eq!(sen_lower_bound(&mut pairs, 125.0, 1.645), 13.0);
        assert_eq!(sen_lower_bound(&mut [1.0], 125.0, 1.645), f64::NEG_INFINITY);
        assert!((normal_upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_upper_tail(2.326) - 0.01).abs() < 1e-4);
        assert!((normal_upper_tail(-1.645) - 0.95).abs() < 1e-4);
    }
}
