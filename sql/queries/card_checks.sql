-- The card's checks table: the latest validation's pass rate per check of one run.
SELECT suite, check_name, threshold, checked, passed, pass_rate FROM check_pass_rates WHERE run_id = $run_id
