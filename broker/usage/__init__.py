"""What sandboxes spend: parsing usage from replies, the ledger, budgets, plan limits and the
usage poll."""
