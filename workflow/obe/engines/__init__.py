"""Engines: text generation (Hugging Face, lean CPU forward, vLLM), rollouts, and TRL's GRPOTrainer."""
