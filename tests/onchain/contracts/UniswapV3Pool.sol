// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import "./IERC20.sol";

/// Emits Uniswap v3's real Swap/Mint/Burn events with real token movements; the tick maths is
/// left out: the test names the amounts, the price and the liquidity.
contract UniswapV3Pool {
    event Mint(
        address sender,
        address indexed owner,
        int24 indexed tickLower,
        int24 indexed tickUpper,
        uint128 amount,
        uint256 amount0,
        uint256 amount1
    );
    event Burn(
        address indexed owner,
        int24 indexed tickLower,
        int24 indexed tickUpper,
        uint128 amount,
        uint256 amount0,
        uint256 amount1
    );
    event Swap(
        address indexed sender,
        address indexed recipient,
        int256 amount0,
        int256 amount1,
        uint160 sqrtPriceX96,
        uint128 liquidity,
        int24 tick
    );

    address public factory;
    address public token0;
    address public token1;
    uint24 public fee;

    constructor(address factory_, address token0_, address token1_, uint24 fee_) {
        factory = factory_;
        token0 = token0_;
        token1 = token1_;
        fee = fee_;
    }

    function mint(address owner, int24 tickLower, int24 tickUpper, uint128 amount, uint256 amount0, uint256 amount1)
        external
    {
        IERC20(token0).transferFrom(msg.sender, address(this), amount0);
        IERC20(token1).transferFrom(msg.sender, address(this), amount1);
        emit Mint(msg.sender, owner, tickLower, tickUpper, amount, amount0, amount1);
    }

    function burn(int24 tickLower, int24 tickUpper, uint128 amount, uint256 amount0, uint256 amount1) external {
        emit Burn(msg.sender, tickLower, tickUpper, amount, amount0, amount1);
    }

    /// Pool deltas as v3 reports them: positive flows into the pool, negative out to ``recipient``.
    function swap(address recipient, int256 amount0, int256 amount1, uint160 sqrtPriceX96, uint128 liquidity, int24 tick)
        external
    {
        _settle(token0, recipient, amount0);
        _settle(token1, recipient, amount1);
        emit Swap(msg.sender, recipient, amount0, amount1, sqrtPriceX96, liquidity, tick);
    }

    function _settle(address token, address recipient, int256 delta) private {
        if (delta > 0) IERC20(token).transferFrom(msg.sender, address(this), uint256(delta));
        if (delta < 0) IERC20(token).transfer(recipient, uint256(-delta));
    }
}
