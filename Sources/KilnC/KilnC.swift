import CKilnABI
import Kiln

// The implementation of include/kiln/kiln.h (being written).
