"""Pipeline stages: plain domain functions plus thin Prefect tasks around them."""
