// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

import "./IERC20.sol";

/// Emits Uniswap v2's (and SushiSwap's) real events with real token movements; the pricing curve
/// is left out: the test names the amounts.  factory() is whatever the test says (Uniswap's or
/// SushiSwap's mainnet factory), which is how the standardiser tells the two apart.
contract UniswapV2Pair {
    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Burn(address indexed sender, uint256 amount0, uint256 amount1, address indexed to);
    event Swap(
        address indexed sender,
        uint256 amount0In,
        uint256 amount1In,
        uint256 amount0Out,
        uint256 amount1Out,
        address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    address public factory;
    address public token0;
    address public token1;
    uint112 private reserve0;
    uint112 private reserve1;

    constructor(address factory_, address token0_, address token1_) {
        factory = factory_;
        token0 = token0_;
        token1 = token1_;
    }

    function mint(uint256 amount0, uint256 amount1) external {
        IERC20(token0).transferFrom(msg.sender, address(this), amount0);
        IERC20(token1).transferFrom(msg.sender, address(this), amount1);
        _sync(reserve0 + amount0, reserve1 + amount1);
        emit Mint(msg.sender, amount0, amount1);
    }

    function burn(uint256 amount0, uint256 amount1, address to) external {
        IERC20(token0).transfer(to, amount0);
        IERC20(token1).transfer(to, amount1);
        _sync(reserve0 - amount0, reserve1 - amount1);
        emit Burn(msg.sender, amount0, amount1, to);
    }

    function swap(uint256 amount0In, uint256 amount1In, uint256 amount0Out, uint256 amount1Out, address to)
        external
    {
        if (amount0In > 0) IERC20(token0).transferFrom(msg.sender, address(this), amount0In);
        if (amount1In > 0) IERC20(token1).transferFrom(msg.sender, address(this), amount1In);
        if (amount0Out > 0) IERC20(token0).transfer(to, amount0Out);
        if (amount1Out > 0) IERC20(token1).transfer(to, amount1Out);
        _sync(reserve0 + amount0In - amount0Out, reserve1 + amount1In - amount1Out);
        emit Swap(msg.sender, amount0In, amount1In, amount0Out, amount1Out, to);
    }

    function _sync(uint256 balance0, uint256 balance1) private {
        reserve0 = uint112(balance0);
        reserve1 = uint112(balance1);
        emit Sync(reserve0, reserve1);
    }
}
