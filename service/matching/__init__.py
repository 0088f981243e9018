"""Finding and scoring copies: the engine every entry point calls (`engine`), candidates from
the indexes (`matcher`), scoring many pairs in order of their bound (`pair_screening`), stored
rows made comparable (`profile_sides`), and avatars read from uploads or addresses
(`avatar_source`)."""
