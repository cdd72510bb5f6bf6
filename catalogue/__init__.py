"""The demo e-commerce catalogue: schema, source, index versions, data generator and churn."""
