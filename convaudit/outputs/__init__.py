"""Outputs: claiming files and directories atomically, and never replacing what convaudit did not write."""
