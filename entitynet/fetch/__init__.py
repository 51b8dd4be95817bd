"""Safe HTTP fetching: address guard, opt-out (X-Robots-Tag, robots.txt), limits and deadlines."""
