"""Training: the one loop (trainer), pure steps, optimizer, weights, placement, memory."""
