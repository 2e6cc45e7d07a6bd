"""The paper's maths: method registry, exploration bonuses, outcome counts, advantages, loss."""
