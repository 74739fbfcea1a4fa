"""Shell scripts devbox runs inside boxes (as the box user, via docker exec) for tmux jobs."""
