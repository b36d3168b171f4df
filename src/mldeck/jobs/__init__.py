"""Orchestration: the scheduler, the job runner and its worker processes, triggers and
policies, orphan detection and health checks. Never imports the console."""
