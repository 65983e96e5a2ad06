-- Pass rate of every check in a run's latest validation, with the Data Docs it wrote.
SELECT c.suite, c.check_name, c.threshold, c.checked, c.passed, c.pass_rate, l.data_docs
FROM check_pass_rates c
JOIN latest_validations l USING (run_id, validation_id)
WHERE c.run_id = $run_id
ORDER BY c.suite, c.check_name;
